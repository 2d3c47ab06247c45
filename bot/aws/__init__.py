"""The AWS adapters, each named by what it does; the only modules that make boto3 clients (with bot/sample.py, the
demo's sample registry). Every client is wrapped by ``errors.translating``: botocore's exceptions become
bot/errors.py's AwsError family here, once, so nothing above this package imports boto3 or botocore.

Nothing is imported here: import the module that does the work (``bot.aws.ecr``, ``bot.aws.billing`` ...), so
that reading one adapter does not load the others.
"""
