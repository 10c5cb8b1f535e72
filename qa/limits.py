"""Values of run_squad.py's flags that no run can use: float flags that are not numbers, sizes beyond any machine.

    refuse_non_finite(parser, args)      # parse_args: `--learning_rate nan` exits 2 naming the flag
    errors += limit_problems(args, f)    # validate_args: one line per value out of bounds (f names a flag)
    notes += limit_notes(args)           # warnings logged at the start of the run

The bounds, and why:
- every float flag must be finite, in float32: `--learning_rate inf` trained an all-NaN model with exit 0, `nan` failed
  in torch with a traceback, and a NaN threshold silently turns every comparison false;
- --max_seq_length: no longer than the model's position table (qa.preflight.position_problem: the run built its
  features, then failed at step 1), and never above MAX_SEQ_LENGTH when the model does not say (100000 built a
  2.4 GB feature cache for 0.5 MB of data: the arrays are max_seq_length wide);
- a micro-batch (per-device batch x max_seq_length) above MAX_BATCH_TOKENS: its activations do not fit on any GPU,
  and the run would only find out after building its features;
- --threads: refused above MAX_THREADS (each thread holds 2 chunks of windows in memory and no machine has that
  many cores), warned above THREADS_PER_CPU x this machine's CPUs. Only warned: a resume takes --threads from
  the run's record, and a run started on a large machine must still resume on a smaller one.
"""

import math
import os

FLOAT32_MAX = 3.4028234663852886e38
MAX_SEQ_LENGTH = 32768  # 64x BERT's 512; the longest position tables of encoder QA models are 8192-16384
MAX_BATCH_TOKENS = 2**22  # 4.2M tokens: one hidden state of bert-base alone is 12.9 GB in fp32 at this size
MAX_THREADS = 1024
THREADS_PER_CPU = 4


def refuse_non_finite(parser, args):
    """parser.error (exit 2, one line, the flag named) for the first float flag whose value is nan, +-inf, or beyond
    float32 (torch computes in it: `--learning_rate 1e39` failed in AdamW with a traceback)."""
    from qa.args import flag_name  # here: qa.args imports this module

    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.type is float and isinstance(value, float) and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            flag = action.option_strings[0]
            default = 0.0 if action.default is None else action.default  # a flag without a default: any number
            example = f"{flag} {default}" if flag_name(flag) == flag else f"{flag_name(flag)}={default}"
            parser.error(f"argument {flag}: {value} is not a finite number (torch computes in float32, up to 3.4e38): "
                         f"give a number, e.g. {example}")


def limit_problems(args, f=lambda flag: flag):
    """One line for each size flag beyond what any run can use (validation has the other checks)."""
    from qa.preflight import position_problem, setting

    problems = []
    if args.max_seq_length > MAX_SEQ_LENGTH:
        problems.append(f"{setting(f('--max_seq_length'), args.max_seq_length)} is beyond any encoder's positions (limit "
                        f"{MAX_SEQ_LENGTH}): use the model's length, e.g. 384 or 512")
    elif args.max_seq_length > 0:
        problems.append(position_problem(args.config_name or args.model_name_or_path, args.max_seq_length,
                                         args.cache_dir, f("--max_seq_length")))
    for flag, batch, used in (("--per_gpu_train_batch_size", args.per_gpu_train_batch_size, args.do_train),
                              ("--per_gpu_eval_batch_size", args.per_gpu_eval_batch_size,
                               args.do_eval or args.evaluate_during_training)):
        tokens = batch * args.max_seq_length
        if used and tokens > MAX_BATCH_TOKENS:
            problems.append(f"{setting(f(flag), batch)} x {setting(f('--max_seq_length'), args.max_seq_length)} = {tokens:,} tokens per "
                            f"device and micro-batch, more than any GPU holds (limit {MAX_BATCH_TOKENS:,}): lower it"
                            + (f" and raise {f('--gradient_accumulation_steps')} for the same batch per step"
                               if flag.endswith("train_batch_size") else ""))
    if args.threads > MAX_THREADS:
        problems.append(f"{setting(f('--threads'), args.threads)} is more than any machine can use (limit {MAX_THREADS}; this "
                        f"one has {cpu_count()} CPUs): use at most {cpu_count()}")
    return [p for p in problems if p]


def limit_notes(args):
    """Warnings (logged, the run goes on) for values that only waste resources."""
    from qa.args import flag_name  # here: qa.args imports this module
    from qa.preflight import setting

    cpus = cpu_count()
    if args.threads > THREADS_PER_CPU * cpus:
        return [f"warning: {setting(flag_name('--threads'), args.threads)} is more than {THREADS_PER_CPU}x this machine's {cpus} CPUs: the "
                f"extra threads only hold more windows in memory (2 chunks each); {cpus} is enough"]
    return []


def cpu_count():
    """CPUs this process may run on (the affinity mask a container or taskset gives), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
