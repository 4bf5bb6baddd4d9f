"""Training side (torch): models, losses, distillation, adaptation, evaluation.

Importing ``train`` does not import torch; submodules that need it do.
"""
