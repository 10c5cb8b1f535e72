"""The official Natural Questions evaluation from the command line (the code is qa/nq/evaluate.py).

    python -m qa.nq_eval --gold_path 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --predictions_path predictions.json
    python -m qa.nq_eval --gold_path 'data/nq/raw/dev/nq-dev-*.jsonl.gz' --predictions_path predictions.json \
        --pretty_print
    python -m qa.nq_eval --gold_path s3://my-bucket/nq/dev/ --predictions_path predictions.json --num_threads 5

Kept as a module path of its own because that is how the official script is run (`python -m
natural_questions.nq_eval`) and how this project's README and Makefile call it. Standard library only.
"""

import sys

from qa.nq.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
