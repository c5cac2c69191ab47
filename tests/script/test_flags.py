"""ccprof.script.flags: the script's options, the guards around a node, their value in one run."""
from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from ccprof.script.applied import applied
from ccprof.script.facts import ModuleFacts
from ccprof.script.flags import UNKNOWN, script_options
from ccprof.script.info import ScriptInfo

PARSER = """
import argparse, torch
p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--no-compile", dest="compile", action="store_false")
p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=False)
p.add_argument("--accum", type=int, default=1)
p.add_argument("--fast", type=str2bool, default=False)
p.add_argument("--mode", type=parse_mode, default="eager")
args = p.parse_args()
"""


def info_of(src: str) -> ScriptInfo:
    return ScriptInfo(ModuleFacts(cst.parse_module(textwrap.dedent(src).lstrip("\n"))))


@pytest.mark.parametrize("argv, expected", [
    (["d"], {"compile": True, "mixed_precision": False, "accum": 1, "fast": False, "mode": UNKNOWN}),
    (["d", "--no-compile", "--mixed-precision", "--acc", "4", "--fast", "yes"],     # a prefix, as argparse
     {"compile": False, "mixed_precision": True, "accum": 4, "fast": True, "mode": UNKNOWN}),
])
def test_argparse_options_read_as_argparse_would(argv, expected):
    opts = script_options(info_of(PARSER), argv)
    assert {k: opts.values[k] for k in expected} == expected
    assert opts.dests["compile"] == "--no-compile" and "args" in opts.namespaces


def test_no_run_means_no_values():
    assert script_options(info_of(PARSER), None).values is None


def test_config_globals_are_overridden_by_the_command_line():
    src = """
        compile = True
        dtype = "bfloat16" if cuda else "float16"
        exec(open("configurator.py").read())
        """
    opts = script_options(info_of(src), ["--compile=False"])
    assert opts.values == {"compile": False, "dtype": UNKNOWN}
    # a config file may set anything
    assert script_options(info_of(src), ["config/big.py"]).values == {"compile": UNKNOWN, "dtype": UNKNOWN}


GUARDED = PARSER + """
model = torch.nn.Linear(2, 2)
if args.mode == "fast":
    pass
elif not args.compile:
    print("eager")
else:
    model = torch.compile(model)
with torch.autocast("cuda", enabled=args.mixed_precision and torch.cuda.is_available()):
    pass
"""


@pytest.mark.parametrize("argv, compile_on, autocast", [
    (["d"], None, "off"),                   # args.mode is not computable: compile may run
    (["d", "--no-compile"], False, "off"),  # the else branch of `elif not args.compile`
    (["d", "--mixed-precision"], None, "on"),   # `True and is_available()`: True on the target GPU
])
def test_guards_in_elif_chains_and_enabled_keywords(argv, compile_on, autocast):
    info = info_of(GUARDED)
    opts = script_options(info, argv)
    c = applied(info, "compile", opts)
    assert (c.on, c.off_in_run) == ((compile_on is not False), compile_on is False)
    assert "--no-compile" in c.behind and "--mode" in c.behind
    a = applied(info, "autocast", opts)
    assert {"off": a.off_in_run, "on": a.on and a.known}[autocast]
    assert "enabled=" in a.behind
    if autocast == "on":        # with the device not known, `is_available()` is not known either
        u = applied(info, "autocast", script_options(info, argv, device=None))
        assert u.on and not u.known


def test_conditions_on_no_option_are_not_flags():
    info = info_of("""
        import torch
        model = torch.nn.Linear(2, 2)
        if torch.cuda.is_available() and __name__ == "__main__":
            model = torch.compile(model)
        """)
    a = applied(info, "compile", script_options(info, []))
    assert a.on and a.known and a.behind == ""


@pytest.mark.parametrize("src, switch", [
    # a choice compared with ==: the value to pass
    ('import argparse\np = argparse.ArgumentParser()\np.add_argument("--model", default="tiny")\n'
     'args = p.parse_args()\nif args.model == "gpt2":\n    model = GPT2LMHeadModel.from_pretrained("gpt2")\n',
     ("--model", "gpt2")),
    # a store_true switch: the flag alone
    ('import argparse\np = argparse.ArgumentParser()\np.add_argument("--pretrained", action="store_true")\n'
     'args = p.parse_args()\nif args.pretrained:\n    model = AutoModel.from_pretrained("bert-base-uncased")\n',
     ("--pretrained",)),
    # nanoGPT: a config global, an elif chain, `init_from.startswith('gpt2')` evaluated
    ("init_from = 'scratch'\nexec(open('configurator.py').read())\nif init_from == 'scratch':\n    model = GPT(c)\n"
     "elif init_from.startswith('gpt2'):\n    model = GPT.from_pretrained(init_from)\n", ("--init_from=gpt2",)),
])
def test_a_from_pretrained_off_in_the_run_has_its_switch(src, switch):
    """Weights loaded behind an option the run left off: off in this run, with the command line
    that turns it on; a tokenizer's or config's from_pretrained loads no weights."""
    info = info_of(src + 'tok = AutoTokenizer.from_pretrained("gpt2")\n')
    a = applied(info, "from_pretrained", script_options(info, []))
    assert a.off_in_run and a.switch == switch
    on = applied(info, "from_pretrained", script_options(info, list(switch)))
    assert on.on and on.known


NANOGPT_FUSED = """
import inspect, torch
device = "cuda" if torch.cuda.is_available() else "cpu"
device_type = "cuda" if "cuda" in device else "cpu"
model = torch.nn.Linear(2, 2).to(device)
fused_available = "fused" in inspect.signature(torch.optim.AdamW).parameters
use_fused = fused_available and device_type == "cuda"
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=use_fused)
"""


@pytest.mark.parametrize("src", [
    NANOGPT_FUSED,
    "import torch\nm = torch.nn.Linear(2, 2)\nopt = torch.optim.SGD(m.parameters(), lr=0.1, fused=torch.cuda.is_available())\n",
    "import torch\ndev = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')\n"
    "m = torch.nn.Linear(2, 2)\nopt = torch.optim.Adam(m.parameters(), fused=dev.type == 'cuda')\n",
])
def test_a_setting_that_reads_the_device_takes_the_target_gpus_branch(src):
    """issue 20: `fused=` True only on CUDA is on for the target GPU, off on the profiling host's CPU."""
    info = info_of(src)
    gpu = applied(info, "fused_optimizer", script_options(info, []))             # the target: CUDA
    assert gpu.on and gpu.known and gpu.device and "reads the device" in gpu.behind
    assert "CUDA takes this branch" in gpu.reason()
    cpu = applied(info, "fused_optimizer", script_options(info, [], device="cpu"))
    assert cpu.off_in_run and not cpu.on
    unknown = applied(info, "fused_optimizer", script_options(info, [], device=None))
    assert unknown.on and not unknown.known


def test_names_bound_twice_or_by_a_loop_are_not_read_through():
    info = info_of("""
        import torch
        use_fused = False
        use_fused = torch.cuda.is_available()
        for on in (True, False):
            pass
        m = torch.nn.Linear(2, 2)
        opt = torch.optim.AdamW(m.parameters(), fused=use_fused)
        opt2 = torch.optim.SGD(m.parameters(), lr=0.1, fused=on)
        """)
    opts = script_options(info, [])
    assert "use_fused" not in opts.bindings and "on" not in opts.bindings
    a = applied(info, "fused_optimizer", opts)
    assert a.on and not a.device and a.behind == ""       # not known: counted as the script wrote it
