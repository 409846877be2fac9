"""`python -m train`: SUNet training (segmentation and classification pre-training), evaluation,
checkpoints and resumption, single process or distributed with torchrun."""
