"""What every training run shares, for the ``training/`` scripts and in-app fine-tuning:
the shared corpora's readers, augmentation, devices, fp16 export, loss weights and
schedules, and one training loop."""
