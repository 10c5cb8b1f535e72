"""Is a model folder what it says it is? One check that every loader for inference calls before loading.

    from qa import model_check
    model_check.verify_model_folder("outputs/nq-albert")              # a final model: ModelFolderError or its path
    model_check.verify_model_folder("outputs/nq-albert/checkpoint-900")   # a checkpoint: hashed against COMPLETE
    python -m qa.model_check outputs/nq-albert                       # the same from a shell (scripts/upload.sh)

A final model (the root of a run folder) gets a hash record, MODEL_RECORD, like a checkpoint's COMPLETE marker:
every file save_final_model wrote (weights, config.json, tokenizer files) with its size and blake2b, written
last, atomically, after config.json (`write_model_record`). What is refused, each with the file named:

- a symbolic link that leaves the folder (model.safetensors -> /etc/passwd): what would be read or uploaded is
  not the folder's; links inside the folder are followed as usual;
- a file that does not match the hash record (or, in a checkpoint, its COMPLETE marker); a final model written
  before records were kept has none: accepted with a one-line warning;
- weights whose keys or shapes do not match config.json (missing or unexpected encoder or QA-head weights: a BERT
  config.json in an ALBERT folder, a base model without its QA head). The keys come from the safetensors
  header and the model that config.json describes, built on torch's meta device: nothing is loaded (5-11 ms for the tests' tiny BERT, ALBERT, RoBERTa and
  DistilBERT configs; not measured on large ones);
- a tokenizer whose token ids do not fit the word embeddings (a tokenizer of another model: IndexError, or
  garbage). A swapped tokenizer of a smaller vocabulary fits the embeddings: only the hash record catches it.

Folders that are not local (a hub model id) are not checked here.
"""

import json
import logging
import os
import re
import struct
import sys

from qa import storage
from qa.run_dir import COMPLETE, MODEL_CONFIG, MODEL_RECORD, STATE_FILE, CheckpointError

RECORD_FORMAT = 1
SAFETENSORS_INDEX = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 2**20    # a safetensors header of albert-xlarge is ~40 KB; more is not a weights file
# Names older checkpoints gave LayerNorm parameters; transformers renames them when loading.
LEGACY_NAMES = ((re.compile(r"\.gamma$"), ".weight"), (re.compile(r"\.beta$"), ".bias"))

logger = logging.getLogger(__name__)


class ModelFolderError(CheckpointError):
    """A model folder is not what it says it is; the message names the file and what to do."""


# ---------------------------------------------------------------------------------------------
# The hash record of a final model
# ---------------------------------------------------------------------------------------------
def remove_model_record(folder):
    """Remove the record before the files it describes are replaced (a cut save then reads as "no record")."""
    try:
        os.remove(os.path.join(folder, MODEL_RECORD))
    except FileNotFoundError:
        pass


def write_model_record(folder, names, extra=None):
    """Write folder/MODEL_RECORD atomically: {"format", "files": {name: {"size", "blake2b"}}, **extra}.

    names: the files of the model, relative to folder (what save_pretrained wrote). Call it last, once every
    file is in place; returns the record's path."""
    files = {}
    for name in sorted(set(names) - {MODEL_RECORD}):
        path = os.path.join(folder, name)
        storage.fsync_path(path)
        files[name] = {"size": os.path.getsize(path), "blake2b": storage.file_digest(path)}
    record = os.path.join(folder, MODEL_RECORD)
    with storage.atomic_write(record, "w", encoding="utf-8") as f:
        json.dump({**(extra or {}), "format": RECORD_FORMAT, "files": files}, f, indent=1, sort_keys=True)
    storage.fsync_path(folder, directory=True)
    return record


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------
def check_links(folder):
    """ModelFolderError for the first symbolic link among folder's files whose target is outside the folder.

    Links to folders are left alone: a run folder's checkpoint-N may live on another disk (each checkpoint is
    checked when it is the folder loaded)."""
    root = os.path.realpath(folder)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.islink(path) or os.path.isdir(path):
            continue
        target = os.path.realpath(path)
        if os.path.commonpath([root, target]) != root:
            raise ModelFolderError(f"{path} is a symbolic link to {os.readlink(path)}, outside {folder}: refused "
                                   "(it would read or upload a file that is not the model's); copy the file "
                                   "into the folder instead of linking it")


def check_hashes(folder, warn):
    """A checkpoint against its COMPLETE marker, a final model against MODEL_RECORD; a missing record is warned."""
    if os.path.exists(os.path.join(folder, COMPLETE)) or os.path.exists(os.path.join(folder, STATE_FILE)):
        from qa.checkpoints import verify_checkpoint  # a checkpoint: COMPLETE lists every file

        verify_checkpoint(folder)
        return
    if not os.path.exists(os.path.join(folder, MODEL_RECORD)):
        warn(f"{folder}: no {MODEL_RECORD} hash record (a final model saved before records were kept): its files "
             "are not checked against hashes")
        return
    problem = storage.folder_problem(folder, MODEL_RECORD, check_hashes=True)
    if problem is not None:
        raise ModelFolderError(f"{folder} cannot be trusted: {problem} (checked against {MODEL_RECORD}); copy the "
                               "model again, or evaluate a checkpoint of the run instead")


def _safetensors_header(path):
    """{tensor name: shape} from a safetensors file's header (the tensors themselves are not read)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            length = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
            if not 0 < length <= MAX_HEADER_BYTES:
                raise ValueError("no safetensors header")
            header = json.loads(f.read(length))
        return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path}: not a readable safetensors file ({exc}); copy the model again") from exc


def weight_shapes(folder):
    """{tensor name: shape} of the folder's weights (one safetensors file, or the shards its index names);
    None when it has only pytorch_model*.bin (not checked: reading its keys would unpickle it)."""
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return _safetensors_header(single)
    index = os.path.join(folder, SAFETENSORS_INDEX)
    if not os.path.exists(index):
        return None
    try:
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFolderError(f"{index}: not a valid index of weight files ({exc}); copy the model again") from exc
    shapes = {}
    for shard in shards:
        shapes.update(_safetensors_header(os.path.join(folder, os.path.basename(shard))))
    return shapes


def expected_shapes(folder):
    """{name: shape} of the QA model config.json describes (built on the meta device: no memory, no weights),
    and the patterns of names transformers itself ignores when they are missing or unexpected."""
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config_path = os.path.join(folder, MODEL_CONFIG)
    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = AutoModelForQuestionAnswering.from_config(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{config_path}: not a question-answering model's config ({exc}); copy the model "
                               "again") from exc
    ignore = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_missing", None) or [])
              + (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}, ignore, config


def _normalise(name):
    for pattern, replacement in LEGACY_NAMES:
        name = pattern.sub(replacement, name)
    return name


def _few(names):
    names = sorted(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_weights_match_config(folder):
    """ModelFolderError naming the weights file when its tensors are not those of config.json's model; returns
    the config (None when there is no config.json, or the weights are not safetensors: nothing to compare)."""
    found = weight_shapes(folder) if os.path.exists(os.path.join(folder, MODEL_CONFIG)) else None
    if found is None:
        return None
    found = {_normalise(name): shape for name, shape in found.items()}
    expected, ignore, config = expected_shapes(folder)
    weights = "model.safetensors" if os.path.exists(os.path.join(folder, "model.safetensors")) else SAFETENSORS_INDEX
    wanted = lambda name: not any(p.search(name) for p in ignore)  # noqa: E731
    missing = [n for n in expected if n not in found and wanted(n)]
    unexpected = [n for n in found if n not in expected and wanted(n)]
    resized = [f"{n} {found[n]} vs {expected[n]}" for n in expected if n in found and found[n] != expected[n]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} weight(s) that {MODEL_CONFIG} ({config.model_type}) needs are missing "
                        f"({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} are not of that model ({_few(unexpected)})")
    if resized:
        problems.append(f"{len(resized)} have other shapes ({_few(resized)})")
    if problems:
        raise ModelFolderError(f"{os.path.join(folder, weights)} does not match {os.path.join(folder, MODEL_CONFIG)}: "
                               + "; ".join(problems) + ". The weights and config.json come from different models (or "
                               "the QA head was never trained): copy the whole folder of one model")
    return config


def _embedding_rows(folder, config):
    shapes = weight_shapes(folder) or {}
    rows = [shape[0] for name, shape in shapes.items() if name.endswith("word_embeddings.weight") and shape]
    return rows[0] if rows else getattr(config, "vocab_size", None)


def check_tokenizer_fits(folder, config=None):
    """ModelFolderError naming the tokenizer file when some token id is beyond the model's word embeddings."""
    from transformers import AutoConfig, AutoTokenizer

    config = config or AutoConfig.from_pretrained(folder)
    rows = _embedding_rows(folder, config)
    if not rows:
        return
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelFolderError(f"{folder}: its tokenizer cannot be loaded ({str(exc).splitlines()[0]}); copy the "
                               "model's tokenizer files into the folder") from exc
    largest = max(tokenizer.get_vocab().values(), default=-1)
    if largest >= rows:
        names = [n for n in ("tokenizer.json", "vocab.txt", "spiece.model", "vocab.json")
                 if os.path.exists(os.path.join(folder, n))]
        where = os.path.join(folder, names[0]) if names else folder
        raise ModelFolderError(f"{where}: the tokenizer has token ids up to {largest}, the model's word embeddings "
                               f"only {rows} rows: it is another model's tokenizer; copy the tokenizer files of the "
                               "model that was trained")


def verify_model_folder(folder, warn=None):
    """Refuse (ModelFolderError, a CheckpointError) a local model folder that is not what it says; return it.

    In order: links leaving the folder, hashes (COMPLETE or MODEL_RECORD), weights against config.json, tokenizer
    against the embeddings. warn: a callable for the one-line warning of a final model without a record (default:
    this module's logger). A name that is not a local folder (a hub id) is returned unchecked."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return folder
    warn = warn or (lambda line: logger.warning("%s", line))
    check_links(folder)
    check_hashes(folder, warn)
    config = check_weights_match_config(folder)
    if config is not None:
        check_tokenizer_fits(folder, config)
    return folder


def main(argv=None):
    """python -m qa.model_check FOLDER...: exit 0 when every folder verifies, 2 (one line each) when one does not."""
    folders = sys.argv[1:] if argv is None else argv
    if not folders:
        print("usage: python -m qa.model_check MODEL_FOLDER...", file=sys.stderr)
        return 2
    status = 0
    for folder in folders:
        try:
            verify_model_folder(folder, warn=lambda line: print(f"warning: {line}", file=sys.stderr))
        except CheckpointError as exc:
            print(f"model_check: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.exit(main())
