package relay

// WaitFanoutIdle returns once no broadcast is queued or being sent, so a
// test knows every count of the broadcasts before has been made.
func WaitFanoutIdle(s *Server) { s.fan.waitIdle() }
