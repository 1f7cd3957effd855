"""Shared by the command-line tests: run ``inkpack`` in-process and capture what it printed."""

from inkpack.cli import main


def run(argv, capsys):
    """``(exit code, stdout, stderr)`` of ``inkpack ARGV`` (argparse's exits count as codes)."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = int(e.code)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err
