"""`python -m emo ...` (and `torchrun ... -m emo extract ...`): the `emo` command."""

from emo.cli import app

if __name__ == "__main__":
    app(prog_name="emo")
