"""Training: the pretraining run and its epochs, checkpoints and resume, recipes (``config``), the
learning-rate schedule, distributed training, fine-tuning and the evaluation protocols."""

__all__: list[str] = []
