output "state_bucket_name" {
  description = "S3 bucket for the main stack's state (terraform init -backend-config=bucket=...)."
  value       = aws_s3_bucket.state.id
}

output "state_kms_key_arn" {
  description = "KMS key encrypting the state bucket."
  value       = aws_kms_key.state.arn
}

output "region" {
  description = "Region of the state bucket (terraform init -backend-config=region=...)."
  value       = var.region
}
