"""The llama.cpp build set-up chooses (affectlens/build.py), fed real /proc/cpuinfo flag sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from affectlens import build

ROOT = Path(__file__).resolve().parents[1]

# The AMD EPYC host the benchmark figures come from (docs/bench.md), as /proc/cpuinfo has it.
AMD_EPYC = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
    "nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 "
    "x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm "
    "cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall fsgsbase "
    "tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma "
    "clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 "
    "clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni "
    "avx512_bitalg avx512_vpopcntdq rdpid fsrm"
)
# An Intel Xeon of the Sapphire Rapids kind (a cloud VM): AVX-512 and AMX advertised.
INTEL_SAPPHIRE_RAPIDS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology "
    "nonstop_tsc cpuid tsc_known_freq pni pclmulqdq monitor ssse3 fma cx16 pdcm pcid sse4_1 "
    "sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm "
    "abm 3dnowprefetch cpuid_fault invpcid_single ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase "
    "tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma "
    "clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni "
    "avx512_bf16 wbnoinvd arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes "
    "vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq rdpid cldemote movdiri movdir64b "
    "md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d "
    "arch_capabilities"
)
# A laptop of the AVX2 generation (Intel Core, Whiskey Lake): no AVX-512 at all.
AVX2_LAPTOP = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx "
    "fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs "
    "bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl "
    "vmx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid sse4_1 sse4_2 x2apic movbe popcnt "
    "tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb "
    "invpcid_single ssbd ibrs ibpb stibp tpr_shadow flexpriority ept vpid ept_ad fsgsbase "
    "tsc_adjust sgx bmi1 avx2 smep bmi2 erms invpcid mpx rdseed adx smap clflushopt intel_pt "
    "xsaveopt xsavec xgetbv1 xsaves dtherm ida arat pln pts hwp hwp_notify hwp_act_window hwp_epp "
    "md_clear flush_l1d arch_capabilities"
)
# An ARM server (AWS Graviton2): a "Features" line, no x86 flags.
ARM_GRAVITON2 = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp ssbs"
)


def cpuinfo(flags: str, cores: int = 2, key: str = "flags") -> str:
    return "".join(f"processor\t: {i}\n{key}\t\t: {flags}\n\n" for i in range(cores))


def never_amx_nor_native(args: list[str]) -> None:
    assert args[0] == "-DGGML_NATIVE=OFF" and args.count("-DGGML_NATIVE=OFF") == 1
    assert not [a for a in args if "AMX" in a or "NATIVE=ON" in a]


def test_amd_epyc_gets_avx512_with_all_three_extensions():
    name, args = build.choose(build.cpu_flags(cpuinfo(AMD_EPYC)))
    # exactly what setup.sh built before the choice moved here, so the cached wheel stays valid
    assert args == [
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX512=ON",
        "-DGGML_AVX512_VNNI=ON",
        "-DGGML_AVX512_VBMI=ON",
        "-DGGML_AVX512_BF16=ON",
    ]
    assert name == "x86-avx512-vnni-vbmi-bf16"


def test_sapphire_rapids_gets_avx512_and_never_amx():
    flags = build.cpu_flags(cpuinfo(INTEL_SAPPHIRE_RAPIDS))
    assert {"amx_tile", "amx_int8", "amx_bf16"} <= flags  # advertised...
    name, args = build.choose(flags)
    never_amx_nor_native(args)  # ...and never built: the native build segfaults there
    assert "-DGGML_AVX512=ON" in args and "-DGGML_AVX512_BF16=ON" in args
    assert name == "x86-avx512-vnni-vbmi-bf16"


def test_avx2_laptop_gets_ggml_baseline_only():
    name, args = build.choose(build.cpu_flags(cpuinfo(AVX2_LAPTOP)))
    assert (name, args) == ("x86-avx2", ["-DGGML_NATIVE=OFF"])


def test_arm_gets_the_portable_build():
    flags = build.cpu_flags(cpuinfo(ARM_GRAVITON2, key="Features"))
    assert "asimd" in flags
    assert build.choose(flags) == ("portable", ["-DGGML_NATIVE=OFF"])
    assert build.choose(build.cpu_flags("")) == ("portable", ["-DGGML_NATIVE=OFF"])  # no cpuinfo


def test_a_cpu_without_the_avx2_baseline_has_it_switched_off():
    # Sandy Bridge: AVX, but none of AVX2, BMI2, FMA, F16C (ggml would enable them by default)
    old = " ".join(
        f for f in AVX2_LAPTOP.split() if f not in {"avx2", "bmi2", "fma", "f16c", "bmi1"}
    )
    name, args = build.choose(build.cpu_flags(cpuinfo(old)))
    assert args == [
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX2=OFF",
        "-DGGML_BMI2=OFF",
        "-DGGML_FMA=OFF",
        "-DGGML_F16C=OFF",
    ]
    assert name == "x86-sse42-avx"


@pytest.mark.parametrize("dropped", build.AVX512_BASE)
def test_avx512_needs_its_whole_base(dropped):
    partial = " ".join(f for f in INTEL_SAPPHIRE_RAPIDS.split() if f != dropped)
    name, args = build.choose(build.cpu_flags(cpuinfo(partial)))
    assert (name, args) == ("x86-avx2", ["-DGGML_NATIVE=OFF"])  # no extension without the base


def test_a_flag_counts_only_if_every_core_has_it():
    no_avx512 = " ".join(f for f in AMD_EPYC.split() if not f.startswith("avx512"))
    text = cpuinfo(AMD_EPYC, cores=3) + cpuinfo(no_avx512, cores=1)
    flags = build.cpu_flags(text)
    assert "avx2" in flags and "avx512f" not in flags
    assert build.choose(flags)[0] == "x86-avx2"


def test_extensions_follow_the_cpu():
    only_vnni = " ".join(f for f in AMD_EPYC.split() if f not in {"avx512vbmi", "avx512_bf16"})
    name, args = build.choose(build.cpu_flags(cpuinfo(only_vnni)))
    assert args[-2:] == ["-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON"]
    assert name == "x86-avx512-vnni"


def test_installed_build_reads_the_setup_stamp(tmp_path):
    assert build.installed_build(tmp_path) is None
    line = "llama-cpp-python==0.3.36 -DGGML_NATIVE=OFF -DGGML_AVX512=ON"
    (tmp_path / build.LLAMA_STAMP).write_text(line + "\n")
    assert build.installed_build(tmp_path) == line


def test_command_prints_this_machines_arguments():
    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "affectlens.build", *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    name, args = build.choose(build.cpu_flags(build.read_cpuinfo()))
    assert run("cmake-args").stdout == " ".join(args) + "\n"
    assert run("variant").stdout == name + "\n"
    bad = run("bogus")
    assert bad.returncode == 2 and "cmake-args" in bad.stderr
