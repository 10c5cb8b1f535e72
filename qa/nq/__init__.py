"""Natural Questions: its records, their candidates, the conversion to SQuAD, whole-page prediction, the official score.

    qa.nq.reader      lines of local / gzip / s3:// NQ files; a full-format line parsed without its token array
    qa.nq.annotation  Span, Annotation, the "2 of 5 annotators" thresholds, the converter's choice of the gold
    qa.nq.document    a record's long-answer candidates, their text, char <-> token <-> byte mapping
    qa.nq.convert     one record -> one SQuAD article; files and runs of them (scripts/nq_to_squad.py)
    qa.nq.predict     whole-page prediction: the long and short answer from the windows (scripts/predict_nq.py)
    qa.nq.evaluate    the official NQ evaluation (python -m qa.nq_eval)
    qa.nq.sample      a generated, learnable sample in the full format (scripts/make_nq_sample.py, make demo)
    qa.nq.download    resumable, verified downloads of NQ v1.0 and SQuAD 2.0 (scripts/download_nq.py)

Standard library only (orjson and isal are optional speedups, guarded in qa.nq.reader): the converter
and the downloader run from a bare python3 without the venv. qa.nq.predict imports numpy, torch and
transformers only inside the functions that run a model.
"""
