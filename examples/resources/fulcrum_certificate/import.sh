# Import by id.
terraform import fulcrum_certificate.example <id>
