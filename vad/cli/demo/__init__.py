"""What ``vad demo`` runs on the command line's side: the HTTP client that talks to the local stack."""
