# Import by id.
terraform import fulcrum_node_group.example <id>
