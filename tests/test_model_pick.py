"""qa.model_pick: which model of a run the commands take, said in one line; the run's recorded torch threads."""

import json

from qa import model_pick, run_dir, storage


def checkpoint(run, step, args=None):
    folder = run / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "args": args or {}}))
    storage.write_marker(str(folder), run_dir.COMPLETE)
    return folder


def test_describe_says_which_model_and_why(tmp_path):
    run = tmp_path / "run"
    checkpoint(run, 5)
    newest = checkpoint(run, 10)
    assert run_dir.run_model(run) == str(newest)
    assert model_pick.describe(str(run), run_dir.run_model(run)) == \
        f"checkpoint-10 (step 10) of {run}: the newest complete checkpoint (no best recorded and no final model yet)"
    (run / run_dir.BEST_FILE).write_text(json.dumps({"checkpoint": "checkpoint-5", "metric": "f1", "value": 70.125}))
    assert model_pick.describe(str(run), run_dir.run_model(run)) == f"checkpoint-5 (step 5) of {run}: the best by f1 (70.12)"
    (run / "config.json").write_text("{}")  # the final model, step 12
    (run / run_dir.SUMMARY_FILE).write_text(json.dumps({"global_step": 12}))
    (run / run_dir.BEST_FILE).write_text(json.dumps({"checkpoint": "checkpoint-3", "metric": "f1", "value": 71.0}))
    assert model_pick.describe(str(run), run_dir.run_model(run)) == \
        f"the final model (step 12) of {run}: the final model (checkpoint-3, the recorded best, is not here)"


def test_recorded_threads_come_from_the_checkpoint_or_the_run(tmp_path):
    run = tmp_path / "run"
    assert model_pick.recorded_threads(str(checkpoint(run, 5, {"torch_threads": 3}))) == 3
    older = checkpoint(run, 4)  # recorded before the flag: the run's args.json says
    assert model_pick.recorded_threads(str(older)) is None
    (run / "args.json").write_text(json.dumps({"torch_threads": 2}))
    assert model_pick.recorded_threads(str(older)) == 2 and model_pick.recorded_threads(str(run)) == 2
    (run / "args.json").write_text(json.dumps({"torch_threads": 0}))
    assert model_pick.recorded_threads(str(run)) is None  # not a count: torch's own
