"""The frozen encoders: Hugging Face audio/text/image models, Whisper, openSMILE and log-mel."""
