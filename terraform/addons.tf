################################################################################
# NVIDIA device plugin
#
# Installed with helm_release rather than kubernetes_manifest: kubernetes_manifest needs a
# reachable API server (and the CRD-free schema) already at plan time, so it cannot be
# planned in the same apply that creates the cluster; helm_release only connects at
# apply time. The chart is pinned to an exact version. (Helm is used here for a
# third-party add-on only; the application's own manifests in k8s/ are plain kustomize.)
################################################################################

resource "helm_release" "nvidia_device_plugin" {
  name       = "nvidia-device-plugin"
  namespace  = "kube-system"
  repository = "https://nvidia.github.io/k8s-device-plugin"
  chart      = "nvidia-device-plugin"
  version    = var.nvidia_device_plugin_chart_version

  values = [yamlencode({
    # The chart's default affinity wants Node Feature Discovery labels; select the GPU
    # node group by its label instead and tolerate its taint.
    affinity     = null
    nodeSelector = { nodegroup = "gpu" }
    tolerations = [{
      key      = local.gpu_taint.key
      operator = "Exists"
      effect   = "NoSchedule"
    }]
    priorityClassName = "system-node-critical"
  })]

  # With desired_size = 0 there is no GPU node yet: do not wait for DaemonSet pods.
  wait = false

  depends_on = [module.eks]
}

################################################################################
# Cluster autoscaler (GPU scale from / to zero)
################################################################################

# An empty managed node group has no node to copy labels and taints from: these ASG
# tags tell the autoscaler what a new GPU node will look like, so a pending pod that
# selects nodegroup=gpu and tolerates the taint triggers a scale-up from zero.
resource "aws_autoscaling_group_tag" "gpu_node_template" {
  for_each = {
    "k8s.io/cluster-autoscaler/node-template/label/nodegroup"                     = "gpu"
    "k8s.io/cluster-autoscaler/node-template/label/k8s.amazonaws.com/accelerator" = "nvidia"
    "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"                = "${local.gpu_taint.value}:NoSchedule"
  }

  autoscaling_group_name = one(module.eks.eks_managed_node_groups["gpu"].node_group_autoscaling_group_names)

  tag {
    key                 = each.key
    value               = each.value
    propagate_at_launch = false
  }
}

data "aws_iam_policy_document" "cluster_autoscaler" {
  statement {
    sid = "Describe"
    actions = [
      "autoscaling:DescribeAutoScalingGroups",
      "autoscaling:DescribeAutoScalingInstances",
      "autoscaling:DescribeLaunchConfigurations",
      "autoscaling:DescribeScalingActivities",
      "autoscaling:DescribeTags",
      "ec2:DescribeImages",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:GetInstanceTypesFromInstanceRequirements",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "DescribeNodegroups"
    actions   = ["eks:DescribeNodegroup"]
    resources = ["arn:${local.partition}:eks:${var.region}:${local.account_id}:nodegroup/${module.eks.cluster_name}/*"]
  }

  statement {
    sid = "ScaleOwnGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = ["arn:${local.partition}:autoscaling:${var.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k8s.io/cluster-autoscaler/${module.eks.cluster_name}"
      values   = ["owned"]
    }
  }
}

resource "aws_iam_policy" "cluster_autoscaler" {
  count = var.enable_cluster_autoscaler ? 1 : 0

  name_prefix = "${local.name}-cluster-autoscaler-"
  description = "Cluster autoscaler: scale the EKS managed node groups of ${local.name}"
  policy      = data.aws_iam_policy_document.cluster_autoscaler.json
}

resource "aws_iam_role" "cluster_autoscaler" {
  count = var.enable_cluster_autoscaler ? 1 : 0

  name_prefix        = "${var.project}-autoscaler-"
  description        = "IRSA role of the cluster autoscaler (kube-system/cluster-autoscaler)"
  assume_role_policy = data.aws_iam_policy_document.irsa_assume["cluster-autoscaler"].json
}

resource "aws_iam_role_policy_attachment" "cluster_autoscaler" {
  count = var.enable_cluster_autoscaler ? 1 : 0

  role       = aws_iam_role.cluster_autoscaler[0].name
  policy_arn = aws_iam_policy.cluster_autoscaler[0].arn
}

resource "helm_release" "cluster_autoscaler" {
  count = var.enable_cluster_autoscaler ? 1 : 0

  name       = "cluster-autoscaler"
  namespace  = "kube-system"
  repository = "https://kubernetes.github.io/autoscaler"
  chart      = "cluster-autoscaler"
  version    = var.cluster_autoscaler_chart_version

  values = [yamlencode({
    cloudProvider = "aws"
    awsRegion     = var.region
    autoDiscovery = { clusterName = module.eks.cluster_name }
    rbac = {
      serviceAccount = {
        name        = "cluster-autoscaler"
        annotations = { "eks.amazonaws.com/role-arn" = aws_iam_role.cluster_autoscaler[0].arn }
      }
    }
    nodeSelector = { nodegroup = "system" }
    extraArgs = {
      expander                      = "least-waste"
      "balance-similar-node-groups" = true
      "skip-nodes-with-system-pods" = false
      "scale-down-unneeded-time"    = "10m"
    }
  })]

  depends_on = [module.eks, aws_iam_role_policy_attachment.cluster_autoscaler]
}

################################################################################
# KEDA: the engines scale on their queue
#
# k8s/overlays/prod/engine-scaledobject.yaml asks KEDA for an HPA of Deployment "engine" driven
# by two PromQL queries on the vLLM queue (kube-prometheus-stack's Prometheus, platform.tf).
# KEDA rather than prometheus-adapter: a ScaledObject states the query, its threshold and the
# HPA behaviour in one object next to the workload, with no adapter rules config that maps
# series to custom metrics, and KEDA owns (creates, updates, deletes) the HPA it implies.
################################################################################

resource "helm_release" "keda" {
  count = var.enable_keda ? 1 : 0

  name             = "keda"
  namespace        = "keda"
  create_namespace = true
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_chart_version

  values = [yamlencode({
    nodeSelector = { nodegroup = "system" }
    # Only the application's ScaledObjects.
    watchNamespace = var.k8s_namespace
  })]

  depends_on = [module.eks]
}

################################################################################
# KubeRay operator: corpus-scale classification (k8s/corpus, a RayJob)
################################################################################

locals {
  # k8s/base/networkpolicies.yaml admits this namespace to the Ray head's dashboard port.
  kuberay_namespace = "kuberay-system"
}

resource "helm_release" "kuberay_operator" {
  count = var.enable_kuberay ? 1 : 0

  name             = "kuberay-operator"
  namespace        = local.kuberay_namespace
  create_namespace = true
  repository       = "https://ray-project.github.io/kuberay-helm/"
  chart            = "kuberay-operator"
  version          = var.kuberay_operator_chart_version

  values = [yamlencode({
    nodeSelector = { nodegroup = "system" }
    # Reconcile RayJobs of the application namespace only. Cluster-scoped RBAC still: the
    # namespace itself is created later, by the prod overlay.
    watchNamespace = [var.k8s_namespace]
  })]

  depends_on = [module.eks]
}
