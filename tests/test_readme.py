"""Every command and snippet of the README is run or checked here.

- each ``python`` block (the 30-second example, the leaky network) runs and prints what the bare block after it
  shows;
- the two set-up commands (the ``sh`` block) are Makefile targets that do what their comments say (``make -n``);
- the CLI synopsis (the ``console`` block) names every subcommand of ``schurjax``, and every flag and choice it
  shows is one that the subcommand's parser accepts; ``schurjax info`` runs;
- the README links to files that exist, and has no other kind of block.
"""

import argparse
import contextlib
import io
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _blocks(lang):
    """Fenced code blocks of the README whose opening fence names ``lang`` ("" for a bare fence)."""
    blocks, current, opened = [], None, None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, opened = [], line[3:].strip()
            else:
                if lang is None or opened == lang:
                    blocks.append((opened, "\n".join(current) + "\n") if lang is None else "\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_every_block_is_one_that_this_file_checks():
    kinds = sorted(lang for lang, _ in _blocks(None))
    assert kinds == ["", "", "console", "python", "python", "sh"], kinds


@pytest.mark.parametrize("which", [0, 1])
def test_python_blocks_run_and_match_readme_output(which):
    code, shown = _blocks("python")[which], _blocks("")[which]
    assert ("single couplings;" if which == 0 else "T -> D:") in shown
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    printed = out.getvalue()
    # the lines the README quotes must be exactly what the code prints now
    for line in shown.splitlines():
        if line.strip() and line.strip() != "...":
            assert line in printed, f"README output line not printed by the example: {line!r}"


def test_setup_commands_are_make_targets():
    (block,) = _blocks("sh")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    expect = {"demo": "schurjax demo", "test": "pytest"}
    for target, needle in expect.items():
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        assert needle in dry.stdout, f"`make {target}` does not run {needle!r}:\n{dry.stdout}"


def _synopsis():
    """(subcommand, [tokens]) per command of the console block; continuation lines are indented."""
    (block,) = _blocks("console")
    commands = []
    for line in block.splitlines():
        if line.startswith("schurjax "):
            commands.append(line)
        elif line.strip():
            assert line.startswith("    ") and commands, f"unexpected line in the CLI synopsis: {line!r}"
            commands[-1] += " " + line.strip()
    out = []
    for command in commands:
        tokens = [t.strip("[]") for t in shlex.split(command)[1:]]
        out.append((tokens[0], [t for t in tokens[1:] if t and t != "..."]))
    return out


def _subparsers():
    from schurjax import cli

    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_cli_synopsis_names_every_subcommand():
    shown = [name for name, _ in _synopsis()]
    assert len(shown) == len(set(shown)), shown
    assert sorted(shown) == sorted(_subparsers()), "the README's CLI synopsis and `schurjax --help` differ"


@pytest.mark.parametrize("name", [name for name, _ in _synopsis()])
def test_cli_synopsis_flags_are_parser_flags(name):
    subcommands = _subparsers()
    assert name in subcommands, f"schurjax has no subcommand {name!r} (README CLI synopsis)"
    parser = subcommands[name]
    options = {s: a for a in parser._actions for s in a.option_strings}
    tokens = dict(_synopsis())[name]
    for i, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        assert token in options, f"`schurjax {name}` has no flag {token} (README CLI synopsis)"
        choices = options[token].choices
        value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if choices is not None and "|" in value:
            unknown = set(value.split("|")) - set(choices)
            assert not unknown, f"`schurjax {name} {token}` does not accept {sorted(unknown)}; it takes {choices}"


def test_cli_info_runs(capsys):
    from schurjax import cli

    assert cli.main(["info"]) == 0
    assert "jax" in capsys.readouterr().out.lower()


def test_links_point_to_files():
    for target in re.findall(r"\]\(([^)#]+)\)", README.read_text()):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
