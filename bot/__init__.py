"""ECR cost bot: ranks ECR repositories by real stored cost and adopts lifecycle policies from Slack."""
