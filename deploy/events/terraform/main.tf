# Events for codepipeline-exporter: EventBridge rules that put CodePipeline and CloudFormation Git
# sync state changes on an SQS queue the exporter reads (events.queue_url in its configuration).
# Use the module once in each region whose pipelines the exporter polls.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "queue_name" {
  description = "The name of the queue, the last segment of events.queue_url."
  type        = string
  default     = "codepipeline-exporter"
}

variable "exporter_role_arn" {
  description = "The IAM role the exporter runs as; when set, the queue policy also lets it receive and delete messages and read the queue's attributes."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

# Messages the queue could not hand over after five receives. The exporter deletes every message it
# reads, readable or not, so this stays empty unless the exporter cannot delete.
resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.queue_name}-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
  tags                      = var.tags
}

resource "aws_sqs_queue" "events" {
  name                    = var.queue_name
  sqs_managed_sse_enabled = true
  # Four days: an exporter that is down over a weekend finds what happened, and polls anyway.
  message_retention_seconds  = 345600
  visibility_timeout_seconds = 60
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = 5
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_rule" "codepipeline" {
  name        = "${var.queue_name}-codepipeline"
  description = "CodePipeline execution, stage and action state changes, for codepipeline-exporter."
  event_pattern = jsonencode({
    source = ["aws.codepipeline"]
    "detail-type" = [
      "CodePipeline Pipeline Execution State Change",
      "CodePipeline Stage Execution State Change",
      "CodePipeline Action Execution State Change",
    ]
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_rule" "git_sync" {
  name        = "${var.queue_name}-git-sync"
  description = "CloudFormation Git sync status changes, for codepipeline-exporter."
  event_pattern = jsonencode({
    source = ["aws.codeconnections"]
    "detail-type" = [
      "Git Sync Repository Sync Status Change",
      "Git Sync Resource Sync Status Change",
    ]
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "codepipeline" {
  rule      = aws_cloudwatch_event_rule.codepipeline.name
  target_id = "codepipeline-exporter"
  arn       = aws_sqs_queue.events.arn
}

resource "aws_cloudwatch_event_target" "git_sync" {
  rule      = aws_cloudwatch_event_rule.git_sync.name
  target_id = "codepipeline-exporter"
  arn       = aws_sqs_queue.events.arn
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "EventBridgeRulesSend"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.codepipeline.arn, aws_cloudwatch_event_rule.git_sync.arn]
    }
  }

  dynamic "statement" {
    for_each = var.exporter_role_arn == "" ? [] : [var.exporter_role_arn]
    content {
      sid       = "ExporterReads"
      effect    = "Allow"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.events.arn]
      principals {
        type        = "AWS"
        identifiers = [statement.value]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.queue.json
}

output "queue_url" {
  description = "events.queue_url in the exporter's configuration."
  value       = aws_sqs_queue.events.url
}

output "queue_arn" {
  description = "The queue's ARN, for the exporter role's policy."
  value       = aws_sqs_queue.events.arn
}
