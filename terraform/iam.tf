################################################################################
# IRSA: Kubernetes service accounts -> IAM roles (through the cluster's OIDC provider)
################################################################################

locals {
  # role key => the "namespace:serviceaccount"s allowed to assume it. The model-reader role
  # (output engine_role_arn) serves every pod with a fetch-model init container.
  irsa_subjects = {
    engine             = [for sa in var.model_reader_service_accounts : "${var.k8s_namespace}:${sa}"]
    trainer            = ["${var.k8s_namespace}:${var.trainer_service_account}"]
    corpus             = ["${var.k8s_namespace}:${var.corpus_service_account}"]
    cluster-autoscaler = ["kube-system:cluster-autoscaler"]
  }

  models_prefix_arn        = "${aws_s3_bucket.models.arn}/models/*"
  corpus_input_prefix_arn  = "${aws_s3_bucket.models.arn}/${var.corpus_input_prefix}*"
  corpus_output_prefix_arn = "${aws_s3_bucket.models.arn}/${var.corpus_output_prefix}*"

  # pyarrow's S3 create_dir(recursive = true), which the corpus command's output store calls,
  # writes an empty "directory marker" object for every level of the output path, the levels
  # above the output prefix included ("corpus/" for "corpus/output/"). Those exact keys may be
  # written too; nothing under them.
  corpus_output_levels = split("/", trimsuffix(var.corpus_output_prefix, "/"))
  corpus_output_marker_arns = [
    for i in range(1, length(local.corpus_output_levels)) :
    "${aws_s3_bucket.models.arn}/${join("/", slice(local.corpus_output_levels, 0, i))}/"
  ]
}

data "aws_iam_policy_document" "irsa_assume" {
  for_each = local.irsa_subjects

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = [for subject in each.value : "system:serviceaccount:${subject}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# Model reader (engine and gateway): their fetch-model init containers read one version
# (read-only, models/ prefix only).
data "aws_iam_policy_document" "engine" {
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = [local.models_prefix_arn]
  }

  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    # Unconditional on purpose: without bucket-level ListBucket, S3 answers 403 instead of
    # 404 for a missing key, and the registry could not tell "not published" from "denied".
    resources = [aws_s3_bucket.models.arn]
  }

  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

# Trainer: publishes new model versions (write, plus the reads that publish's
# existence check needs); it cannot delete anything.
data "aws_iam_policy_document" "trainer" {
  statement {
    sid       = "WriteModels"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.models_prefix_arn]
  }

  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    # Unconditional: see the engine policy.
    resources = [aws_s3_bucket.models.arn]
  }

  statement {
    sid       = "EncryptModels"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

# Corpus RayJob (k8s/corpus): the Ray head and workers fetch the model version (read models/*),
# the job reads its papers (read corpus/input/*) and writes its answers (write corpus/output/*,
# plus the reads and multipart aborts an S3 writer needs); it cannot delete anything, and it
# cannot write models or input.
data "aws_iam_policy_document" "corpus" {
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = [local.models_prefix_arn]
  }

  statement {
    sid       = "ReadInput"
    actions   = ["s3:GetObject"]
    resources = [local.corpus_input_prefix_arn]
  }

  statement {
    sid       = "WriteOutput"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = [local.corpus_output_prefix_arn]
  }

  dynamic "statement" {
    for_each = length(local.corpus_output_marker_arns) > 0 ? [local.corpus_output_marker_arns] : []

    content {
      sid       = "WriteOutputFolderMarkers"
      actions   = ["s3:PutObject"]
      resources = statement.value
    }
  }

  statement {
    sid     = "ListBucket"
    actions = ["s3:ListBucket"]
    # Unconditional: see the engine policy (fetch-model tells "not published" from "denied").
    resources = [aws_s3_bucket.models.arn]
  }

  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role" "engine" {
  name               = "${local.name}-engine"
  description        = "IRSA role of ${join(", ", local.irsa_subjects.engine)}: read model versions"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume["engine"].json
}

resource "aws_iam_role_policy" "engine" {
  name   = "read-models"
  role   = aws_iam_role.engine.id
  policy = data.aws_iam_policy_document.engine.json
}

resource "aws_iam_role" "trainer" {
  name               = "${local.name}-trainer"
  description        = "IRSA role of ${local.irsa_subjects.trainer[0]}: publish model versions"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume["trainer"].json
}

resource "aws_iam_role_policy" "trainer" {
  name   = "publish-models"
  role   = aws_iam_role.trainer.id
  policy = data.aws_iam_policy_document.trainer.json
}

resource "aws_iam_role" "corpus" {
  name               = "${local.name}-corpus"
  description        = "IRSA role of ${local.irsa_subjects.corpus[0]}: classify a corpus (read models and input, write output)"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume["corpus"].json
}

resource "aws_iam_role_policy" "corpus" {
  name   = "classify-corpus"
  role   = aws_iam_role.corpus.id
  policy = data.aws_iam_policy_document.corpus.json
}

################################################################################
# GitHub Actions: OIDC federation, no long-lived access keys
################################################################################

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 1 : 0

  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.create_github_oidc_provider ? 0 : 1

  url = "https://token.actions.githubusercontent.com"
}

locals {
  github_oidc_provider_arn = var.create_github_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : data.aws_iam_openid_connect_provider.github[0].arn
}

data "aws_iam_policy_document" "ci_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    # Only this repository, and only the listed refs (main branch, release tags).
    condition {
      test     = "StringLike"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [for s in var.github_allowed_subjects : "repo:${var.github_repository}:${s}"]
    }
  }
}

resource "aws_iam_role" "ci" {
  name                 = "${local.name}-github-ci"
  description          = "Assumed by GitHub Actions of ${var.github_repository} through OIDC"
  assume_role_policy   = data.aws_iam_policy_document.ci_assume.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "ci" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPush"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [for r in aws_ecr_repository.this : r.arn]
  }

  statement {
    sid       = "Kubeconfig"
    actions   = ["eks:DescribeCluster"]
    resources = [module.eks.cluster_arn]
  }

  statement {
    sid       = "ReadModelManifests"
    actions   = ["s3:GetObject"]
    resources = [local.models_prefix_arn]
  }

  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    # Unconditional: see the engine policy.
    resources = [aws_s3_bucket.models.arn]
  }

  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "ci" {
  name   = "release-and-retrain"
  role   = aws_iam_role.ci.id
  policy = data.aws_iam_policy_document.ci.json
}
