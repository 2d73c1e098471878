# The names of these outputs are a contract: k8s/overlays/prod/terraform-outputs.env and
# the GitHub workflows are keyed by them (tests/infra/test_terraform.py checks both).

output "region" {
  description = "AWS region of the stack."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "model_bucket_name" {
  description = "S3 bucket holding model versions under models/NAME/VERSION/."
  value       = aws_s3_bucket.models.id
}

output "engine_role_arn" {
  description = "IRSA role ARN that reads model versions: the engine (and gateway) service accounts (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.engine.arn
}

output "trainer_role_arn" {
  description = "IRSA role ARN for the trainer service account (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.trainer.arn
}

output "corpus_role_arn" {
  description = "IRSA role ARN for the corpus RayJob's service account (eks.amazonaws.com/role-arn): reads models and corpus input, writes corpus output."
  value       = aws_iam_role.corpus.arn
}

output "ci_role_arn" {
  description = "Role that GitHub Actions assumes through OIDC (repository variable AWS_ROLE_ARN)."
  value       = aws_iam_role.ci.arn
}

output "ecr_repository_urls" {
  description = "ECR repository URL per image (gateway, engine, engine-cpu, trainer)."
  value       = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}

output "api_keys_secret_name" {
  description = "Secrets Manager secret holding the gateway API keys, one per line."
  value       = aws_secretsmanager_secret.api_keys.name
}
