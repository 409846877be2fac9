"""`python -m train`: SUNet training (segmentation and classification pre-training), evaluation,
checkpoints and resumption, single process or distributed with torchrun."""

from sunet_deploy.cli import say_missing_extras

say_missing_extras()  # first: an entry point missing an extra's package says so in one line
