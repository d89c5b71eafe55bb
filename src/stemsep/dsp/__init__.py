"""Signal processing: STFT/iSTFT with Spleeter's conventions, masks, Wiener filter."""
