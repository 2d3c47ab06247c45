"""The pure core: no boto3, no slack_sdk, no sqlite. Everything here is data in, data out."""
