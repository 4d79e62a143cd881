"""Pure-torch SGDFuse networks: Stage I, the denoising U-Net, the HFAH head and the schedules."""
