#!/usr/bin/env python3

import urllib.request

try:
  response = urllib.request.urlopen('http://localhost:4567/api/health-check')
  if response.getcode() == 200:
    print("[OK] Flask server is running")
    exit(0) #Success = 0
  else:
    print("[BAD] Flask server is not running")
    exit(1) #Failure
except Exception as e:
  print(e)
  exit(1)
