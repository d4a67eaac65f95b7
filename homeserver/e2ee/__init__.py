"""End-to-end encryption plumbing: device and one-time keys, cross-signing, to-device messages, key backup."""
