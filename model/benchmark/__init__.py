"""The benchmark protocol of UCF-Crime and XD-Violence: the feature layout and its constants, list files,
frame ground truth, the official metrics, the test protocol, the packaged index and the synthetic benchmark."""
