# Import by id.
terraform import fulcrum_tenant.example <id>
