"""A local Kubernetes control plane for tests and the demo (not part of the operator or the chart).

`controlplane` starts etcd, kube-apiserver and kube-controller-manager (built by
hack/build-control-plane.sh) on 127.0.0.1; `podrunner` stands in for a kubelet.
"""
