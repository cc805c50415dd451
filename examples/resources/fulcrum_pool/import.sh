# Import by id.
terraform import fulcrum_pool.example <id>
