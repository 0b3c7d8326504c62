"""The environment a job gets: what every launch sets (docs/container-contract.md §1.4, §8.3), and the
policy for what a caller may add.

The policy is an allow-list: a caller's `env` may carry the ordinary settings listed in ALLOWED_NAMES and
ALLOWED_PREFIXES (threads, NCCL/Gloo/torch debugging, locale, the stand-in's FAKE_TAO_* knobs), plus names
the operator allows with TAO_BEVFUSION_ENV_ALLOW (','-separated; 'PREFIX_*' for a family). Anything else is
refused. Whatever an allow entry says, it may never carry:
- variables that change how programs are loaded or interpreted (LD_*, PYTHON*, BASH_ENV, PATH ...): they
  would run code from a mounted folder inside the job;
- device and launcher variables the backends own (CUDA/NVIDIA device lists, torchrun's PET_* and the
  distributed RANK/MASTER_* set, scheduler variables);
- the caches and HOME the launch sets;
- secrets: names whose words say key, token, secret, password, credential or auth.
"""

import os
import re
from typing import Any

from tao_bevfusion.backends.distenv import RESERVED_ENV
from tao_bevfusion.core.errors import InputError, problem

MAX_ENTRIES = 32
MAX_VALUE = 1024
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
MANAGED = {
    "TELEMETRY_OPT_OUT",
    "HOME",
    "TAO_TOOLKIT_CACHE",
    "XDG_CACHE_HOME",
    "TORCH_HOME",
    "MPLCONFIGDIR",
    "NUMBA_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "HF_HOME",
    "JOB_ID",
    "CLOUD_BASED",
}
LOADER = {
    "PATH",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "IFS",
    "GCONV_PATH",
    "NODE_OPTIONS",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYLIB",
    "RUBYOPT",
    "MALLOC_CONF",
    "GLIBC_TUNABLES",
    "OPENSSL_CONF",
}
LOADER_PREFIXES = ("LD_", "DYLD_", "PYTHON", "NVIDIA_")
DEVICES = {
    "CUDA_VISIBLE_DEVICES",
    "TAO_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
}
DISTRIBUTED = RESERVED_ENV
DISTRIBUTED_PREFIXES = ("PET_", "TORCHELASTIC_", "SLURM_", "OMPI_", "PMI_", "PMIX_", "KUBERNETES_")
SECRET_WORDS = {
    "KEY",
    "KEYS",
    "APIKEY",
    "TOKEN",
    "TOKENS",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "PRIVATE",
    "SESSION",
    "COOKIE",
}


ALLOW_ENV = "TAO_BEVFUSION_ENV_ALLOW"
ALLOWED_NAMES = {
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "PYTORCH_CUDA_ALLOC_CONF",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_LAUNCH_BLOCKING",
    "CUDA_MODULE_LOADING",
    "CUDA_DEVICE_MAX_CONNECTIONS",
    "TZ",
    "LANG",
    "LANGUAGE",
    "TORCH_CPP_LOG_LEVEL",
    "TORCH_DISTRIBUTED_DEBUG",
    "TORCH_SHOW_CPP_STACKTRACES",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING",
    "TORCH_NCCL_BLOCKING_WAIT",
    "TORCH_NCCL_TRACE_BUFFER_SIZE",
    "TORCHELASTIC_ERROR_FILE",
}
# FAKE_TAO_*: pacing and fault knobs of the TAO stand-in (tests/standin); the real container ignores them.
ALLOWED_PREFIXES = ("NCCL_", "GLOO_", "LC_", "KMP_", "FAKE_TAO_")
NEVER_ALLOWED_PARTS = (
    "PLUGIN",
    "LIBRARY",
    "PRELOAD",
)  # NCCL_NET_PLUGIN & co. load a shared library


def _operator_allows(upper: str) -> bool:
    for entry in (e.strip().upper() for e in os.environ.get(ALLOW_ENV, "").split(",")):
        if entry and (upper == entry or (entry.endswith("*") and upper.startswith(entry[:-1]))):
            return True
    return False


def _allowed(upper: str) -> bool:
    return upper in ALLOWED_NAMES or upper.startswith(ALLOWED_PREFIXES) or _operator_allows(upper)


def refusal(name: str) -> tuple[str, str] | None:
    """(why, fix) when `name` may not be set by a caller, else None."""
    upper = name.upper()
    if upper in MANAGED:
        return ("is set by the launcher (HOME, caches, telemetry opt-out, JOB_ID)", "remove it")
    if (
        upper in LOADER
        or upper.startswith(LOADER_PREFIXES)
        or any(p in upper for p in NEVER_ALLOWED_PARTS)
    ):
        return (
            "changes how programs are loaded or interpreted inside the job",
            "remove it; bake such settings into the image instead",
        )
    if upper in DEVICES:
        return (
            "is set by the launcher (GPU visibility belongs to the backend)",
            "choose host GPUs with run_action(gpus=[...])",
        )
    if upper in DISTRIBUTED or upper.startswith(DISTRIBUTED_PREFIXES):
        return (
            "distributed-launch variables are set by the backend for every node",
            "remove it; set num_nodes/num_gpus and the backend fills rank and master address",
        )
    words = set(re.split(r"[_\d]+", upper)) - {""}
    if words & SECRET_WORDS:
        return (
            "looks like a secret; secrets never go in job env, plans or logs",
            "use encryption_key for the model key; keep other credentials out of the job",
        )
    if not _allowed(upper):
        return (
            "is not on the job environment's allow-list (threads, NCCL_/GLOO_ settings, locale, torch "
            "debugging)",
            f"remove it, or have the operator allow it: {ALLOW_ENV}='{name}' in the server's "
            "environment",
        )
    return None


def validate_env(env: dict[str, Any] | None) -> dict[str, str]:
    """The caller's env, checked against the policy above. Every problem is reported at once."""
    out: dict[str, str] = {}
    problems = []
    items = list((env or {}).items())
    if len(items) > MAX_ENTRIES:
        raise InputError(
            problem(
                "env",
                f"{len(items)} variables given, at most {MAX_ENTRIES}",
                "pass only the settings the job needs",
            ),
            headline="refused env",
        )
    for name, value in items:
        shown = str(name)[:60]
        if not isinstance(name, str) or not ENV_NAME.match(name):
            problems.append(
                problem(f"env.{shown}", "not a valid variable name", "use [A-Za-z_][A-Za-z0-9_]*")
            )
            continue
        why = refusal(name)
        text = str(value) if isinstance(value, (str, int, float, bool)) else None
        if why:
            problems.append(problem(f"env.{name}", why[0], why[1]))
        elif text is None or len(text) > MAX_VALUE or "\x00" in text:
            problems.append(
                problem(
                    f"env.{name}",
                    f"value must be a string of at most {MAX_VALUE} characters without NUL",
                    "pass a short string value",
                )
            )
        else:
            out[name] = text
    if problems:
        raise InputError(problems, headline="refused env")
    return out


def job_env(home_dir: str, cache_dir: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment every launch gets, plus the caller's validated extras."""
    env = {
        "TELEMETRY_OPT_OUT": "yes",
        "HOME": home_dir,
        "TAO_TOOLKIT_CACHE": cache_dir,
        "XDG_CACHE_HOME": cache_dir,
        "TORCH_HOME": f"{cache_dir}/torch",
        "MPLCONFIGDIR": f"{cache_dir}/matplotlib",
        "NUMBA_CACHE_DIR": f"{cache_dir}/numba",
        "TRITON_CACHE_DIR": f"{cache_dir}/triton",
    }
    env.update(extra)
    return env


# What a host process (the local backend) inherits from the server: enough to find and run the CLI, nothing
# else (no cloud credentials, tokens or the server's own settings). TAO_BEVFUSION_LOCAL_PASS_ENV adds names.
HOST_PASS = {
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CUDA_HOME",
    "CUDA_PATH",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
}
HOST_PASS_PREFIXES = ("LC_",)
HOST_PASS_ENV = "TAO_BEVFUSION_LOCAL_PASS_ENV"


def host_env(environ: dict[str, str]) -> dict[str, str]:
    """The allow-listed part of the server's environment that a host job starts from."""
    extra = {n.strip() for n in environ.get(HOST_PASS_ENV, "").split(",") if n.strip()}
    return {
        k: v
        for k, v in environ.items()
        if (k in HOST_PASS or k.startswith(HOST_PASS_PREFIXES) or k in extra) and refusal_is_safe(k)
    }


def refusal_is_safe(name: str) -> bool:
    """A passed-through name must not look like a secret, whatever the operator listed."""
    words = set(re.split(r"[_\d]+", name.upper())) - {""}
    return not words & SECRET_WORDS
