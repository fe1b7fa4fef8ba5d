"""A spec's text quoted in a diagnostic cannot drive the terminal it is printed on."""

from __future__ import annotations

from tests.conftest import run_cli


def test_control_characters_of_the_spec_are_shown_not_sent_to_the_terminal(tmp_path) -> None:
    # ESC sequences that would colour, clear the screen, set the title, erase the line above
    # (to hide the error and forge an `ok:`), plus CR, BEL and the one-byte CSI (C1 control)
    spec = tmp_path / "pipeline.yaml"
    spec.write_text('apiVersion: mlprism/v1\nname: e\nsteps:\n  b:\n    run: echo\n'
                    '    needs: ["x\\e[2J\\e]0;title\\a\\e[1A\\e[2K\\rok: e (1 steps)\\x9b2J"]\n')
    r = run_cli("validate", str(spec))
    assert r.code == 2 and "MLP220" in r.err
    for ch in "\x1b\x07\r\x9b":
        assert ch not in r.err, repr(r.err)
    assert "x\\x1b[2J\\x1b]0;title\\x07\\x1b[1A\\x1b[2K\\x0dok: e (1 steps)\\x9b2J" in r.err
