// Package deploy holds the tests of Hearth's deployment files: the Helm
// chart in helm/hearth, rendered with Helm's own Go packages and every
// object decoded strictly into its API type, and the Dockerfile. It is a
// module of its own so that the hearth binary's module gains none of
// Helm's or Kubernetes' dependencies; `make test` runs it.
package deploy
