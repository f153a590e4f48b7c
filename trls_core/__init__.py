"""trls: Time series Representation Learning via Spectrogram (TRLS) for EEG/ECG.

Importing this package has no side effects: no logging set-up, no I/O, no
network, no MLflow/Prefect import. Those happen only inside the functions
that need them.
"""

__version__ = "0.1.0"
