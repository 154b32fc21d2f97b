print("drctl")
