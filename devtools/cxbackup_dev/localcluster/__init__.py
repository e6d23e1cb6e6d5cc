"""A local Kubernetes cluster for tests and the demo (not part of the operator or the chart).

`controlplane` starts etcd, kube-apiserver and kube-controller-manager (built by
hack/build-control-plane.sh) on 127.0.0.1; `node` adds a real node (containerd, kubelet, kube-scheduler);
`images` builds the project's image without Docker; `stack` installs the chart on them.
"""
