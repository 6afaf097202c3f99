"""Which llama.cpp build set-up compiles for this CPU: a pure function from CPU flags to CMake
arguments, so the choice is tested on real flag sets instead of living in shell.

PyPI has only llama-cpp-python's source, so ``scripts/setup.sh`` builds it once per argument
set (its wheel cache is keyed by them) and records ``LLAMA <args>`` in the venv's
``LLAMA_STAMP`` file, which ``affectlens bench`` prints beside its table.

    python -m affectlens.build cmake-args    # the arguments for this machine's /proc/cpuinfo
    python -m affectlens.build variant       # their short name, e.g. x86-avx512-vnni-vbmi-bf16

The rules, each with its reason:

- **Never native.** ``-DGGML_NATIVE=OFF`` always: the native build (``-march=native``) enables
  what the CPU advertises, and on some Intel Xeons (Sapphire Rapids kind, ``amx_*`` flags) it
  segfaults in ggml's AMX path. So every x86 extension is named explicitly instead.
- **AMX never on.** ``GGML_AMX_TILE/INT8/BF16`` stay at ggml's default OFF, whatever the CPU
  advertises (the crash above).
- **The AVX2 baseline.** With ``GGML_NATIVE=OFF`` ggml turns on SSE4.2, AVX, AVX2, BMI2, FMA and
  F16C by default (its ``INS_ENB``), which every x86-64 CPU of the last decade has. Only those
  this CPU lacks are switched off (``-DGGML_AVX2=OFF`` ...), so an older CPU gets a build it can
  run rather than an illegal instruction, and the arguments of a usual CPU stay short (and its
  cached wheel stays valid). ggml drops these defaults when ``SOURCE_DATE_EPOCH`` is set, so
  set-up builds without it.
- **AVX-512 only when its whole base is there.** ``GGML_AVX512`` compiles with ``-mavx512f
  -mavx512cd -mavx512vl -mavx512dq -mavx512bw``, so it is on only when all five flags are
  present; it evaluates prompts ~40 % faster than the AVX2 baseline on the AMD EPYC hosts
  (docs/bench.md). Its extensions VNNI, VBMI and BF16 are added where present, never without
  the base (ggml's code paths for them assume it).
- **A flag counts only if every core has it** (the flag lines of /proc/cpuinfo intersected), so
  a hybrid CPU is built for the cores that have the least.
- **Not x86** (no ``sse2`` flag: ARM, or no /proc/cpuinfo at all): only ``-DGGML_NATIVE=OFF``,
  ggml's portable build, as before. A native ARM build is likely faster; it is unmeasured.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

LLAMA_STAMP = ".affectlens-llama"  # in the venv (sys.prefix): "llama-cpp-python==X <args>"

# ggml options on by default with GGML_NATIVE=OFF, and the /proc/cpuinfo flag each needs.
BASELINE = {
    "GGML_SSE42": "sse4_2",
    "GGML_AVX": "avx",
    "GGML_AVX2": "avx2",
    "GGML_BMI2": "bmi2",
    "GGML_FMA": "fma",
    "GGML_F16C": "f16c",
}
AVX512_BASE = ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")
# AVX-512 extensions: (ggml option, /proc/cpuinfo flag, short name in the variant)
AVX512_EXTENSIONS = (
    ("GGML_AVX512_VNNI", "avx512_vnni", "vnni"),
    ("GGML_AVX512_VBMI", "avx512vbmi", "vbmi"),
    ("GGML_AVX512_BF16", "avx512_bf16", "bf16"),
)


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags every core of a /proc/cpuinfo text has (x86 ``flags``, ARM ``Features``)."""
    per_core = [
        set(line.split(":", 1)[1].split())
        for line in cpuinfo.splitlines()
        if line.split(":", 1)[0].strip() in ("flags", "Features") and ":" in line
    ]
    return frozenset(set.intersection(*per_core)) if per_core else frozenset()


def choose(flags: Iterable[str]) -> tuple[str, list[str]]:
    """(variant name, CMake arguments) of the llama.cpp build for a CPU with ``flags``."""
    flags = set(flags)
    args = ["-DGGML_NATIVE=OFF"]
    if "sse2" not in flags:  # not x86-64: ggml's portable build
        return "portable", args
    missing = [option for option, flag in BASELINE.items() if flag not in flags]
    args += [f"-D{option}=OFF" for option in missing]
    if missing:
        have = [o.removeprefix("GGML_").lower() for o in BASELINE if o not in missing]
        name = "x86-" + ("-".join(have) if have else "sse2")
        return name, args
    if not all(f in flags for f in AVX512_BASE):
        return "x86-avx2", args
    args.append("-DGGML_AVX512=ON")
    extensions = [(option, short) for option, flag, short in AVX512_EXTENSIONS if flag in flags]
    args += [f"-D{option}=ON" for option, _ in extensions]
    return "-".join(["x86-avx512", *(short for _, short in extensions)]), args


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""  # not Linux: the portable build


def installed_build(prefix: str | Path = sys.prefix) -> str | None:
    """What set-up recorded for the installed wheel (``llama-cpp-python==X <args>``), if any."""
    try:
        return (Path(prefix) / LLAMA_STAMP).read_text().strip() or None
    except OSError:
        return None


def main(argv: list[str]) -> int:
    commands = ("cmake-args", "variant")
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m affectlens.build {{{','.join(commands)}}}", file=sys.stderr)
        return 2
    name, args = choose(cpu_flags(read_cpuinfo()))
    print(" ".join(args) if argv[0] == "cmake-args" else name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
