# Import by id.
terraform import fulcrum_member.example <id>
