################################################################################
# Platform add-ons that k8s/overlays/prod relies on
#   - External Secrets Operator + ClusterSecretStore "aws-secrets-manager": syncs the
#     gateway API keys (Secrets Manager) into the Secret gateway-api-keys.
#   - ingress-nginx: the IngressClass "nginx" of the gateway's Ingress, behind an NLB.
# Third-party charts, pinned to exact versions (the application's own manifests stay
# plain kustomize).
################################################################################

locals {
  eso_namespace       = "external-secrets"
  eso_service_account = "external-secrets"
}

data "aws_iam_policy_document" "external_secrets_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = ["system:serviceaccount:${local.eso_namespace}:${local.eso_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# Read-only, and only this project's secret.
data "aws_iam_policy_document" "external_secrets" {
  statement {
    sid       = "ReadApiKeys"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [aws_secretsmanager_secret.api_keys.arn]
  }

  statement {
    sid       = "DecryptApiKeys"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role" "external_secrets" {
  count = var.enable_external_secrets ? 1 : 0

  name_prefix        = "${var.project}-eso-"
  description        = "IRSA role of ${local.eso_namespace}/${local.eso_service_account}: read the gateway API keys"
  assume_role_policy = data.aws_iam_policy_document.external_secrets_assume.json
}

resource "aws_iam_role_policy" "external_secrets" {
  count = var.enable_external_secrets ? 1 : 0

  name   = "read-api-keys"
  role   = aws_iam_role.external_secrets[0].id
  policy = data.aws_iam_policy_document.external_secrets.json
}

resource "helm_release" "external_secrets" {
  count = var.enable_external_secrets ? 1 : 0

  name             = "external-secrets"
  namespace        = local.eso_namespace
  create_namespace = true
  repository       = "https://charts.external-secrets.io"
  chart            = "external-secrets"
  version          = var.external_secrets_chart_version

  values = [yamlencode({
    installCRDs = true
    serviceAccount = {
      name        = local.eso_service_account
      annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.external_secrets[0].arn }
    }
    nodeSelector   = { nodegroup = "system" }
    webhook        = { nodeSelector = { nodegroup = "system" } }
    certController = { nodeSelector = { nodegroup = "system" } }
  })]

  # The ClusterSecretStore below needs the CRDs and the webhook to be ready.
  wait       = true
  depends_on = [module.eks, aws_iam_role_policy.external_secrets]
}

# A separate release because a custom resource cannot be installed in the same Helm
# release as its CRD. Usable from the application namespace only.
resource "helm_release" "cluster_secret_store" {
  count = var.enable_external_secrets ? 1 : 0

  name      = "cluster-secret-store"
  namespace = local.eso_namespace
  chart     = "${path.module}/charts/cluster-secret-store"

  values = [yamlencode({
    name       = "aws-secrets-manager"
    region     = var.region
    namespaces = [var.k8s_namespace]
  })]

  depends_on = [helm_release.external_secrets]
}

resource "helm_release" "ingress_nginx" {
  count = var.enable_ingress_nginx ? 1 : 0

  name             = "ingress-nginx"
  namespace        = "ingress-nginx"
  create_namespace = true
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.ingress_nginx_chart_version

  values = [yamlencode({
    controller = {
      replicaCount = 2
      nodeSelector = { nodegroup = "system" }
      ingressClassResource = {
        name    = "nginx"
        default = false
      }
      service = {
        type                  = "LoadBalancer"
        externalTrafficPolicy = "Local"
        annotations = {
          "service.beta.kubernetes.io/aws-load-balancer-type"   = "nlb"
          "service.beta.kubernetes.io/aws-load-balancer-scheme" = "internet-facing"
        }
      }
      metrics = { enabled = true }
      # Idle upstream keep-alive to the pods, stated rather than left to the chart's default:
      # the gateway's own (GATEWAY_KEEP_ALIVE_S=75) must outlast it, so nginx is the side that
      # closes an idle connection and never reuses one the gateway is closing (sporadic 502s).
      config = {
        "upstream-keepalive-timeout" = "60"
      }
    }
  })]

  depends_on = [module.eks]
}

# Prometheus operator, Prometheus, Alertmanager and Grafana: k8s/monitoring ships
# ServiceMonitors and PrometheusRules (monitoring.coreos.com CRDs) for the gateway and
# engines, and k8s/base's NetworkPolicies admit scrapes from the "monitoring" namespace.
resource "helm_release" "kube_prometheus_stack" {
  count = var.enable_monitoring ? 1 : 0

  name             = "kube-prometheus-stack"
  namespace        = "monitoring"
  create_namespace = true
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_chart_version
  timeout          = 900

  values = [yamlencode({
    prometheusOperator = { nodeSelector = { nodegroup = "system" } }
    prometheus = {
      prometheusSpec = {
        nodeSelector = { nodegroup = "system" }
        retention    = "15d"
        # Pick up ServiceMonitors and rules from every namespace, not only this release's.
        serviceMonitorSelectorNilUsesHelmValues = false
        podMonitorSelectorNilUsesHelmValues     = false
        ruleSelectorNilUsesHelmValues           = false
      }
    }
    alertmanager       = { alertmanagerSpec = { nodeSelector = { nodegroup = "system" } } }
    grafana            = { nodeSelector = { nodegroup = "system" } }
    kube-state-metrics = { nodeSelector = { nodegroup = "system" } }
  })]

  depends_on = [module.eks]
}
