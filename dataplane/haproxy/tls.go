package haproxy

import (
	"errors"
	"fmt"
)

// TLS termination: the ssl options of an https listener's bind line. Each
// certificate is a PEM bundle the agent writes; the first is the default,
// the others are chosen by SNI.

// sslBind returns the options following the address on an https listener's
// bind line, or the model field that cannot be rendered and why.
func sslBind(certFiles []string) (opts, field string, err error) {
	if len(certFiles) == 0 {
		return "", "cert_files", errors.New("an https listener needs at least one certificate")
	}
	opts = " ssl"
	for i, f := range certFiles {
		w, err := quoteWord(f)
		if err != nil {
			return "", fmt.Sprintf("cert_files[%d]", i), err
		}
		opts += " crt " + w
	}
	return opts + " alpn h2,http/1.1", "", nil
}
