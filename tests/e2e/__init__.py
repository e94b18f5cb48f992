"""End-to-end tests: the AWS emulator as a server, the built wheel, the Lambda runtime."""
