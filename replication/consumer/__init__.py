"""The consumer: the apply function and what it is built from.

Nothing is imported here: the Lambda entry point (:mod:`replication.consumer.handler`)
imports only what its cold start needs.
"""
