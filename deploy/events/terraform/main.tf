# Events for codepipeline-exporter: EventBridge rules that put CodePipeline and CloudFormation Git
# sync state changes on an SQS queue the exporter reads (events.queue_url in its configuration).
# One queue serves every region of the account: use the module once with the queue in one region,
# and once with forward_to_event_bus_arn (that region's default event bus) in each other region
# whose pipelines the exporter polls.

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

variable "forward_to_event_bus_arn" {
  description = "Empty: create the queue and the rules that fill it. Set (the default event bus of the queue's region, arn:aws:events:QUEUE_REGION:ACCOUNT:event-bus/default): create no queue, only the rules, which forward this region's events to that bus."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^(arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/[A-Za-z0-9._/-]+)?$", var.forward_to_event_bus_arn))
    error_message = "forward_to_event_bus_arn is empty or an event bus ARN."
  }
}

variable "sns_topic_arn" {
  description = "For one queue per sharded replica: an SNS topic in the provider's region that receives the events (from rules created once, outside this module). When set, the queue is subscribed to the topic, its policy lets the topic send, and the module creates no rules of its own. Ignored with forward_to_event_bus_arn."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+)?$", var.sns_topic_arn))
    error_message = "sns_topic_arn is empty or an SNS topic ARN."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

locals {
  forwards   = var.forward_to_event_bus_arn != ""
  has_queue  = !local.forwards
  from_topic = local.has_queue && var.sns_topic_arn != ""
  has_rules  = !local.from_topic
  event_patterns = {
    codepipeline = jsonencode({
      source = ["aws.codepipeline"]
      "detail-type" = [
        "CodePipeline Pipeline Execution State Change",
        "CodePipeline Stage Execution State Change",
        "CodePipeline Action Execution State Change",
      ]
    })
    git_sync = jsonencode({
      source = ["aws.codeconnections"]
      "detail-type" = [
        "Git Sync Repository Sync Status Change",
        "Git Sync Resource Sync Status Change",
      ]
    })
  }
}

# Messages the queue could not hand over after five receives. The exporter deletes every message it
# reads, readable or not, so this stays empty unless the exporter cannot delete.
resource "aws_sqs_queue" "dead_letter" {
  count                     = local.has_queue ? 1 : 0
  name                      = "${var.queue_name}-dlq"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
  tags                      = var.tags
}

resource "aws_sqs_queue" "events" {
  count                   = local.has_queue ? 1 : 0
  name                    = var.queue_name
  sqs_managed_sse_enabled = true
  # Four days: an exporter that is down over a weekend finds what happened, and polls anyway.
  message_retention_seconds  = 345600
  visibility_timeout_seconds = 60
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[0].arn
    maxReceiveCount     = 5
  })
  tags = var.tags
}

# The role EventBridge assumes to put this region's events on the queue region's bus. A name
# prefix, not a name: the module's instances in several regions never clash on the global name.
data "aws_iam_policy_document" "forward_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "forward" {
  count = local.forwards ? 1 : 0
  statement {
    actions   = ["events:PutEvents"]
    resources = [var.forward_to_event_bus_arn]
  }
}

resource "aws_iam_role" "forward" {
  count              = local.forwards ? 1 : 0
  name_prefix        = "codepipeline-exporter-fwd-"
  description        = "Lets the codepipeline-exporter rules forward events to the queue region's event bus."
  assume_role_policy = data.aws_iam_policy_document.forward_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "forward" {
  count  = local.forwards ? 1 : 0
  name   = "put-events"
  role   = aws_iam_role.forward[0].id
  policy = data.aws_iam_policy_document.forward[0].json
}

resource "aws_cloudwatch_event_rule" "codepipeline" {
  count         = local.has_rules ? 1 : 0
  name          = "${var.queue_name}-codepipeline"
  description   = "CodePipeline execution, stage and action state changes, for codepipeline-exporter."
  event_pattern = local.event_patterns.codepipeline
  tags          = var.tags
}

resource "aws_cloudwatch_event_rule" "git_sync" {
  count         = local.has_rules ? 1 : 0
  name          = "${var.queue_name}-git-sync"
  description   = "CloudFormation Git sync status changes, for codepipeline-exporter."
  event_pattern = local.event_patterns.git_sync
  tags          = var.tags
}

resource "aws_cloudwatch_event_target" "codepipeline" {
  count     = local.has_rules ? 1 : 0
  rule      = aws_cloudwatch_event_rule.codepipeline[0].name
  target_id = "codepipeline-exporter"
  arn       = local.forwards ? var.forward_to_event_bus_arn : one(aws_sqs_queue.events[*].arn)
  role_arn  = one(aws_iam_role.forward[*].arn)
}

resource "aws_cloudwatch_event_target" "git_sync" {
  count     = local.has_rules ? 1 : 0
  rule      = aws_cloudwatch_event_rule.git_sync[0].name
  target_id = "codepipeline-exporter"
  arn       = local.forwards ? var.forward_to_event_bus_arn : one(aws_sqs_queue.events[*].arn)
  role_arn  = one(aws_iam_role.forward[*].arn)
}

# One queue per replica, all fed by one topic: the topic delivers the SNS envelope, which the
# exporter reads as it reads a bare event.
resource "aws_sns_topic_subscription" "events" {
  count      = local.from_topic ? 1 : 0
  topic_arn  = var.sns_topic_arn
  protocol   = "sqs"
  endpoint   = aws_sqs_queue.events[0].arn
  depends_on = [aws_sqs_queue_policy.events]
}

data "aws_iam_policy_document" "queue" {
  count = local.has_queue ? 1 : 0

  dynamic "statement" {
    for_each = local.has_rules ? ["rules"] : []
    content {
      sid       = "EventBridgeRulesSend"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.events[0].arn]
      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = concat(aws_cloudwatch_event_rule.codepipeline[*].arn, aws_cloudwatch_event_rule.git_sync[*].arn)
      }
    }
  }

  dynamic "statement" {
    for_each = local.from_topic ? [var.sns_topic_arn] : []
    content {
      sid       = "SnsTopicSends"
      effect    = "Allow"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.events[0].arn]
      principals {
        type        = "Service"
        identifiers = ["sns.amazonaws.com"]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [statement.value]
      }
    }
  }

  dynamic "statement" {
    for_each = var.exporter_role_arn == "" ? [] : [var.exporter_role_arn]
    content {
      sid       = "ExporterReads"
      effect    = "Allow"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = [aws_sqs_queue.events[0].arn]
      principals {
        type        = "AWS"
        identifiers = [statement.value]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  count     = local.has_queue ? 1 : 0
  queue_url = aws_sqs_queue.events[0].id
  policy    = data.aws_iam_policy_document.queue[0].json
}

# The addresses before forward_to_event_bus_arn and sns_topic_arn made these resources optional:
# an existing deployment keeps its queue and rules.
moved {
  from = aws_sqs_queue.dead_letter
  to   = aws_sqs_queue.dead_letter[0]
}

moved {
  from = aws_sqs_queue.events
  to   = aws_sqs_queue.events[0]
}

moved {
  from = aws_cloudwatch_event_rule.codepipeline
  to   = aws_cloudwatch_event_rule.codepipeline[0]
}

moved {
  from = aws_cloudwatch_event_rule.git_sync
  to   = aws_cloudwatch_event_rule.git_sync[0]
}

moved {
  from = aws_cloudwatch_event_target.codepipeline
  to   = aws_cloudwatch_event_target.codepipeline[0]
}

moved {
  from = aws_cloudwatch_event_target.git_sync
  to   = aws_cloudwatch_event_target.git_sync[0]
}

moved {
  from = aws_sqs_queue_policy.events
  to   = aws_sqs_queue_policy.events[0]
}

output "queue_url" {
  description = "events.queue_url in the exporter's configuration; null when the module forwards."
  value       = one(aws_sqs_queue.events[*].url)
}

output "queue_arn" {
  description = "The queue's ARN, for the exporter role's policy; null when the module forwards."
  value       = one(aws_sqs_queue.events[*].arn)
}
