"""`python -m zssr_tf` is the `zssr` command."""

from zssr_tf.cli import run

if __name__ == "__main__":
    run()
