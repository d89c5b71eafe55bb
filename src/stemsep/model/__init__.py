"""U-Net models, official checkpoint import and model resolution."""
