# Copy to prod.tfvars (git-ignored values are fine here: nothing secret belongs in tfvars).
region      = "us-east-1"
project     = "paper-classifier"
environment = "prod"

github_repository = "example-org/paper-classifier"

kubernetes_version = "1.34"
vpc_cidr           = "10.40.0.0/16"
single_nat_gateway = true

# Restrict the public API endpoint where you can (GitHub-hosted runners need it open
# unless you use self-hosted runners inside the VPC).
cluster_endpoint_public_access_cidrs = ["0.0.0.0/0"]
cluster_admin_arns                   = ["arn:aws:iam::123456789012:role/Admin"]

system_instance_types = ["m6i.large"]
system_node_count     = { min = 2, desired = 2, max = 4 }

gpu_instance_types = ["g5.2xlarge"] # must hold a 4 vCPU / 24 GiB pod (the trainer)
gpu_min_size       = 0
gpu_desired_size   = 1 # 0 = scale from zero (first request waits for a node)
gpu_max_size       = 10
gpu_capacity_type  = "ON_DEMAND"

k8s_namespace                 = "paper-classifier"
model_reader_service_accounts = ["engine", "gateway"]
trainer_service_account       = "trainer"
corpus_service_account        = "corpus"
corpus_input_prefix           = "corpus/input/"
corpus_output_prefix          = "corpus/output/"

noncurrent_version_retention_days = 30
