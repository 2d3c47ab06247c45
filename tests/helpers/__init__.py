"""Helpers shared by the test modules (plain functions and constants; the fixtures live in tests/conftest.py).

No test module imports another test module: what two of them need lives here (test_architecture checks it).
- ``aws``: moto's account, the sample estates and how they are loaded, the ECR client, the CLI runner;
- ``slack``: the identities, the signed requests and clicks, `serve` as its own process, Block Kit limits;
- ``rows``: scan rows and estates built in memory (no AWS);
- ``report``: the weekly report job wired to the Slack stand-in.
"""
