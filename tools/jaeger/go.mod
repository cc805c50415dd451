// Jaeger v2 for `make run` (bin/jaeger): its module has a replace directive,
// so `go install …@version` refuses it; this wrapper repeats the replace.
module github.com/fulcrumlb/fulcrum/tools/jaeger

go 1.26.8

require github.com/jaegertracing/jaeger v1.76.0

replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
