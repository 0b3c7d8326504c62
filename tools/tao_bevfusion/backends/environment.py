"""The environment a job gets: what every launch sets (docs/container-contract.md §1.4, §8.3), and the
policy for what a caller may add.

A caller's `env` may carry ordinary settings (TOKENIZERS_PARALLELISM, OMP_NUM_THREADS, NCCL_DEBUG ...).
It may not carry:
- variables that change how programs are loaded or interpreted (LD_*, PYTHON*, BASH_ENV, PATH ...): they
  would run code from a mounted folder inside the job;
- device and launcher variables the backends own (CUDA/NVIDIA device lists, torchrun's PET_* and the
  distributed RANK/MASTER_* set, scheduler variables);
- the caches and HOME the launch sets;
- secrets: names whose words say key, token, secret, password, credential or auth.
"""

import re
from typing import Any

from tao_bevfusion.backends.distenv import RESERVED_ENV
from tao_bevfusion.core.errors import InputError, problem

MAX_ENTRIES = 32
MAX_VALUE = 1024
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
MANAGED = {"TELEMETRY_OPT_OUT", "HOME", "TAO_TOOLKIT_CACHE", "XDG_CACHE_HOME", "TORCH_HOME", "MPLCONFIGDIR",
           "NUMBA_CACHE_DIR", "TRITON_CACHE_DIR", "HF_HOME", "JOB_ID", "CLOUD_BASED"}
LOADER = {"PATH", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "GCONV_PATH", "NODE_OPTIONS",
          "PERL5LIB", "PERL5OPT", "RUBYLIB", "RUBYOPT", "MALLOC_CONF", "GLIBC_TUNABLES", "OPENSSL_CONF"}
LOADER_PREFIXES = ("LD_", "DYLD_", "PYTHON", "NVIDIA_")
DEVICES = {"CUDA_VISIBLE_DEVICES", "TAO_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"}
DISTRIBUTED = RESERVED_ENV
DISTRIBUTED_PREFIXES = ("PET_", "TORCHELASTIC_", "SLURM_", "OMPI_", "PMI_", "PMIX_", "KUBERNETES_")
SECRET_WORDS = {"KEY", "KEYS", "APIKEY", "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS",
                "PWD", "CREDENTIAL", "CREDENTIALS", "AUTH", "PRIVATE", "SESSION", "COOKIE"}


def refusal(name: str) -> tuple[str, str] | None:
    """(why, fix) when `name` may not be set by a caller, else None."""
    upper = name.upper()
    if upper in MANAGED:
        return ("is set by the launcher (HOME, caches, telemetry opt-out, JOB_ID)", "remove it")
    if upper in LOADER or upper.startswith(LOADER_PREFIXES):
        return ("changes how programs are loaded or interpreted inside the job",
                "remove it; bake such settings into the image instead")
    if upper in DEVICES:
        return ("is set by the launcher (GPU visibility belongs to the backend)",
                "choose host GPUs with run_action(gpus=[...])")
    if upper in DISTRIBUTED or upper.startswith(DISTRIBUTED_PREFIXES):
        return ("distributed-launch variables are set by the backend for every node",
                "remove it; set num_nodes/num_gpus and the backend fills rank and master address")
    words = set(re.split(r"[_\d]+", upper)) - {""}
    if words & SECRET_WORDS:
        return ("looks like a secret; secrets never go in job env, plans or logs",
                "use encryption_key for the model key; keep other credentials out of the job")
    return None


def validate_env(env: dict[str, Any] | None) -> dict[str, str]:
    """The caller's env, checked against the policy above. Every problem is reported at once."""
    out: dict[str, str] = {}
    problems = []
    items = list((env or {}).items())
    if len(items) > MAX_ENTRIES:
        raise InputError(problem("env", f"{len(items)} variables given, at most {MAX_ENTRIES}",
                                 "pass only the settings the job needs"), headline="refused env")
    for name, value in items:
        shown = str(name)[:60]
        if not isinstance(name, str) or not ENV_NAME.match(name):
            problems.append(problem(f"env.{shown}", "not a valid variable name", "use [A-Za-z_][A-Za-z0-9_]*"))
            continue
        why = refusal(name)
        text = str(value) if isinstance(value, (str, int, float, bool)) else None
        if why:
            problems.append(problem(f"env.{name}", why[0], why[1]))
        elif text is None or len(text) > MAX_VALUE or "\x00" in text:
            problems.append(problem(f"env.{name}", f"value must be a string of at most {MAX_VALUE} characters "
                                    "without NUL", "pass a short string value"))
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
