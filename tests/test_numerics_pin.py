"""The portable CPU kernel path (seal_repro/numerics.py) is set on import, respected when the user chose, and part
of every memo key."""

import subprocess
import sys

import pytest

from seal_repro import memo, numerics

X86 = {"avx2", "fma", "avx512f"}


def test_pin_sets_both_switches_on_an_avx2_x86_cpu():
    env = {}
    assert numerics.pin(env, flags=X86, machine="x86_64") == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def test_pin_never_overwrites_what_the_user_set():
    env = {"MKL_CBWR": "COMPATIBLE"}
    assert numerics.pin(env, flags=X86, machine="x86_64") == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert env["MKL_CBWR"] == "COMPATIBLE"


@pytest.mark.parametrize("env,flags,machine", [
    ({"SEAL_REPRO_CPU_NUMERICS": "native"}, X86, "x86_64"),
    ({"SEAL_REPRO_CPU_NUMERICS": " Native "}, X86, "x86_64"),
    ({}, {"neon", "asimd"}, "aarch64"),
    ({}, {"sse4_2", "avx"}, "x86_64"),  # no AVX2: the CPU's own path is all there is
])
def test_pin_does_nothing_when_native_or_without_avx2(env, flags, machine):
    before = dict(env)
    assert numerics.pin(env, flags=flags, machine=machine) == {}
    assert env == before


def test_an_unknown_mode_warns_and_pins():
    env = {"SEAL_REPRO_CPU_NUMERICS": "nativ"}
    with pytest.warns(UserWarning, match="nativ"):
        assert numerics.pin(env, flags=X86, machine="x86_64")
    assert numerics.mode(env) == "portable"


def _capability(code: str, **env) -> str:
    import os

    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR",
                                                                 "SEAL_REPRO_CPU_NUMERICS")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.strip().splitlines()[-1]


def test_importing_the_package_caps_torch_before_its_first_op():
    if not ({"avx2", "fma"} <= numerics.cpu_flags()):
        pytest.skip("this CPU has no AVX2: nothing is pinned")
    probe = "import torch, seal_repro; torch.ones(3).sum(); print(torch.backends.cpu.get_cpu_capability())"
    assert _capability(probe) == "AVX2"
    # native: whatever torch picks on its own, the same as without the package
    alone = _capability("import torch; print(torch.backends.cpu.get_cpu_capability())")
    assert _capability(probe, SEAL_REPRO_CPU_NUMERICS="native") == alone


def test_the_kernel_path_is_part_of_every_memo_key(monkeypatch):
    material = {"round": 1}
    here = memo.key_of(material)
    monkeypatch.setattr(memo, "cpu_numerics", lambda: {"aten_cpu_capability": "AVX512", "mkl_cbwr": None,
                                                       "mkl_enable_instructions": None})
    assert memo.key_of(material) != here


def test_round_timing_sums_the_stages_rounds(tmp_path):
    from seal_repro.io import write_jsonl
    from seal_repro.report.knowledge import round_timing

    write_jsonl(tmp_path / "a" / "rounds.jsonl", [
        {"train": {"seconds": 3.0}, "answer": {"questions": 7, "seconds": 1.0}},
        {"train": None, "answer": {"questions": 7, "seconds": 1.0}},          # base: not a trained round
        {"train": {"seconds": 5.0}}])                                          # before answer timing: skipped
    write_jsonl(tmp_path / "b" / "x" / "rounds.jsonl", [{"train": {"seconds": 4.0}, "answer": {"seconds": 2.0}}])
    t = round_timing([tmp_path / "a", tmp_path / "b"])
    assert t == {"rounds": 2, "train_seconds": 7.0, "answer_seconds": 3.0, "answer_share": 0.3}
    assert round_timing([tmp_path / "none"])["answer_share"] is None


INTEL = ("GenuineIntel", "Intel(R) Xeon(R) Processor")
AMD = ("AuthenticAMD", "AMD EPYC")


@pytest.mark.parametrize("cbwr,vendor,branch", [
    ("AVX2", "GenuineIntel", "AVX2"),
    ("AVX2", "AuthenticAMD", "AUTO"),             # Intel-only branch: MKL runs AUTO on another vendor's CPU
    ("BRANCH=avx2,STRICT", "AuthenticAMD", "AUTO"),
    ("BRANCH=AVX2", "GenuineIntel", "AVX2"),
    ("COMPATIBLE", "AuthenticAMD", "COMPATIBLE"),  # the one fixed branch every x86 vendor runs
    ("AUTO", "GenuineIntel", "AUTO"),
    (None, "GenuineIntel", None),
])
def test_mkl_branch_is_what_mkl_runs_not_what_was_asked(cbwr, vendor, branch):
    assert numerics.mkl_branch(cbwr, vendor) == branch


def test_the_signature_names_the_cpu_only_where_mkl_runs_the_cpus_own_branch():
    pinned = {"MKL_CBWR": "AVX2"}
    intel = numerics.signature(pinned, cpu=INTEL)
    # an Intel CPU under the pin: the three keys memo entries were always made with, no CPU model
    assert set(intel) == {"aten_cpu_capability", "mkl_cbwr", "mkl_enable_instructions"}
    assert numerics.signature(pinned, cpu=("GenuineIntel", "Intel(R) Core(TM) i7")) == intel
    amd = numerics.signature(pinned, cpu=AMD)
    assert amd["mkl_branch"] == "AUTO" and amd["cpu"] == "AuthenticAMD AMD EPYC"
    assert amd != intel != numerics.signature({}, cpu=INTEL)  # unpinned Intel: its own kernels, its own key
    assert numerics.signature(pinned, cpu=("AuthenticAMD", "AMD Ryzen 9")) != amd
    assert "cpu" not in numerics.signature({"MKL_CBWR": "COMPATIBLE"}, cpu=AMD)


def test_x86_mode_pins_the_branch_every_x86_vendor_runs_even_without_avx2():
    for flags in (X86, {"sse4_2"}):
        env = {"SEAL_REPRO_CPU_NUMERICS": "x86"}
        assert numerics.pin(env, flags=flags, machine="x86_64") == numerics.X86_ENV
        assert numerics.mode(env) == "x86"
    assert numerics.pin({"SEAL_REPRO_CPU_NUMERICS": "x86"}, flags=set(), machine="aarch64") == {}
    # its rounds share one memo key on every vendor's CPU (no CPU model in the signature)
    sig = numerics.signature({"MKL_CBWR": "COMPATIBLE"}, cpu=AMD)
    assert sig == numerics.signature({"MKL_CBWR": "COMPATIBLE"}, cpu=INTEL)


def test_x86_mode_reaches_torch_before_its_first_op():
    probe = "import torch, seal_repro; torch.ones(3).sum(); print(torch.backends.cpu.get_cpu_capability())"
    assert _capability(probe, SEAL_REPRO_CPU_NUMERICS="x86") == "DEFAULT"


CPUINFO_TWO_CPUS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu avx2 fma avx512f

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2
"""


def test_cpu_info_reads_the_first_processor_block_only():
    info = numerics.parse_cpu_info(CPUINFO_TWO_CPUS)
    assert info["vendor_id"] == "GenuineIntel"
    assert info["model name"] == "Intel(R) Xeon(R) Processor"
    assert set(info["flags"].split()) == {"fpu", "avx2", "fma", "avx512f"}
    # an aarch64 block has no `flags` (its `Features` line is not x86 flags) and a line without a colon is skipped
    arm = numerics.parse_cpu_info("processor\t: 0\nFeatures\t: fp asimd\nstray line\n\nHardware\t: x\n")
    assert arm == {"processor": "0", "Features": "fp asimd"}
    assert numerics.parse_cpu_info("") == {}


def test_every_cpu_reader_agrees_with_the_one_parser():
    from seal_repro import provenance
    from seal_repro.bench import numerics as bench_numerics

    info = numerics.cpu_info()
    if not info:
        pytest.skip("no /proc/cpuinfo on this machine")
    assert numerics.cpu_identity() == (info.get("vendor_id"), info.get("model name"))
    assert numerics.cpu_flags() == set(info.get("flags", "").split())
    assert provenance._cpu()["cpu_model"] == info.get("model name")
    assert bench_numerics.cpu_model() == (info.get("model name") or bench_numerics.platform.processor()
                                          or bench_numerics.platform.machine())
