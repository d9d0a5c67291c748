"""The README's 30-second example runs as written and prints what the README shows."""

import contextlib
import io
import pathlib

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang):
    """Fenced code blocks of the README whose opening fence names ``lang`` ("" for a bare fence)."""
    blocks, current, opened = [], None, None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, opened = [], line[3:].strip()
            else:
                if opened == lang:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_quick_example_runs_and_matches_readme_output():
    code = _blocks("python")[0]
    shown = next(b for b in _blocks("") if "single couplings;" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    printed = out.getvalue()
    # the lines the README quotes must be exactly what the code prints now
    for line in shown.splitlines():
        if line.strip() and line.strip() != "...":
            assert line in printed, f"README output line not printed by the example: {line!r}"
